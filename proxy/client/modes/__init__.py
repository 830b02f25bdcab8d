"""A client connection's behaviour is one mode object.

The connection's inlined fast path (single-key commands straight to their group) runs only
while `mode.fast_path` is true; every mode that is not the plain one turns it off by existing.
Before a command runs, `dispatch` asks the mode to `intercept` it: a mode that answers or keeps
the command itself returns True, and the command goes no further.

Modes are stateless singletons unless they carry per-connection state; switching is
`client.set_mode(mode)`.
"""
