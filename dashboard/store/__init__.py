"""The store: a key -> JSON map with revisions, CAS and a leader lock (`base`), its key layout
(`keys`) and two backends, a local directory (`file`) and etcd (`etcd`)."""
