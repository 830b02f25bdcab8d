/*
 * proxy._accel._speedups -- the compiled request/reply hot path of slotproxy.
 *
 * Every function and type here has a pure-Python twin that is the reference (named beside
 * each one); proxy/_accel/__init__.py picks one set or the other, and the test suite runs the
 * same tests over both, plus a differential test on random streams. Behaviour must stay
 * byte-identical: the same requests, frames, slots, limits and error texts.
 *
 *   RequestParser      proxy.protocol.request.PyRequestParser  (RESP multibulk + inline)
 *   split_inline_args  proxy.protocol.request.split_inline_args (sdssplitargs)
 *   key_slot, crc16    slotcore.keyslot                          (CRC16-XMODEM, {hash tag})
 *   ReplyReader        slotcore.resp.ReplyReader                 (backend reply framing)
 *   ReplySlot          proxy.client.reply.ReplySlot              (in-order release)
 *   deliver            the loop of proxy.backend.conn.BackendConn.data_received
 *   fast_run           the inlined fast path of ClientConnection._dispatch_chunk
 *   split_plan         proxy.fanout.split.plan_split             (MSET/MGET/DEL per group)
 *   Flusher            proxy.backend.conn.Flusher                (one write per iteration)
 *
 * Written against the CPython C API only (no Cython): measured on the request-framing kernel,
 * the hand-written module ran ~7% fewer instructions and needs no build dependency beyond a
 * C compiler (see bench/README.md, "Compiled hot path").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>
#include <stdint.h>

/* ------------------------------------------------------------------------------------------
 * Interned names and shared objects
 * ---------------------------------------------------------------------------------------- */

static PyObject *ProtocolError;         /* slotcore.resp.ProtocolError */
static PyObject *s_fifo, *s_out, *s_dirty, *s_flusher, *s_mark, *s_pipeline_paused,
    *s_pipeline_progress, *s_append, *s_popleft, *s_resolve, *s_lanes, *s_state, *s_send,
    *s_data, *s_max_bulk_len, *s_max_multibulk_len, *s_max_inline_len,
    *s_countdown, *s_slow_countdown, *s_every, *s_sample;


/* ------------------------------------------------------------------------------------------
 * Attribute access on __slots__ instances, as the interpreter's specialised LOAD_ATTR_SLOT
 * does it: the hot path reads and writes a few attributes of Python objects per request
 * (a connection's fifo, out, dirty; the samplers' countdowns). PyObject_GetAttr walks the
 * type's MRO cache, the member descriptor and its getter (~100-150 instructions, more for a
 * set); here a (type, name) pair is looked up once in a small direct-mapped cache that gives
 * the slot's offset in the instance, and then it is one load. Only a member descriptor of
 * type T_OBJECT_EX on a type with the generic getattr/setattr qualifies; anything else (an
 * instance dict, a property, an empty slot: its AttributeError) takes the generic call.
 * The cache holds strong references to the types it names, so a pointer is never reused.
 * ---------------------------------------------------------------------------------------- */
#define AC_BITS 10
#define AC_SIZE (1 << AC_BITS)  /* ~60 (type, name) pairs are hot: room to spare (a collision evicts) */

typedef struct {
    PyTypeObject *type;  /* strong */
    PyObject *name;      /* interned, borrowed from the s_* statics (immortal for us) */
    Py_ssize_t off;      /* > 0: the slot's offset; 0: not a plain slot (generic path) */
    PyObject *cval;      /* or a class constant: a plain value in the type's dict, on a type
                            whose instances have no __dict__ to shadow it (borrowed: the
                            version tag changes if the type's dict does) */
    int writable;
    unsigned int version;  /* the type's tp_version_tag when filled: any change to the type
                              (a class attribute set, a base changed) gives it a new one */
} ac_entry;

static ac_entry ac_tab[AC_SIZE];

static inline ac_entry *ac_find(PyTypeObject *tp, PyObject *name) {
    /* multiplicative hashing of both pointers (their low bits are alignment) */
    uint64_t k = (uint64_t)(uintptr_t)tp * 0x9E3779B97F4A7C15ull
                 ^ (uint64_t)(uintptr_t)name * 0xC2B2AE3D27D4EB4Full;
    size_t h = (size_t)(k >> (64 - AC_BITS));
    ac_entry *e = &ac_tab[h];
    if (e->type == tp && e->name == name && e->version != 0 && tp->tp_version_tag == e->version
        && (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG))
        return e;
    /* fill (or evict): what the generic lookup would find first on the type */
    Py_XDECREF(e->type);
    Py_INCREF(tp);
    e->type = tp;
    e->name = name;
    e->off = 0;
    e->cval = NULL;
    e->writable = 0;
    e->version = 0;
    if (tp->tp_getattro == PyObject_GenericGetAttr && PyUnicode_CheckExact(name)) {
        PyObject *d = _PyType_Lookup(tp, name);  /* borrowed; assigns a version tag */
        if (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) e->version = tp->tp_version_tag;
        if (d != NULL && Py_TYPE(d)->tp_descr_get == NULL && tp->tp_dictoffset == 0
            && !(tp->tp_flags & Py_TPFLAGS_MANAGED_DICT))
            e->cval = d;  /* e.g. Mode.fast_path */
        if (d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            if (m->type == T_OBJECT_EX && m->offset > 0) {
                e->off = m->offset;
                e->writable = !(m->flags & READONLY)
                              && tp->tp_setattro == PyObject_GenericSetAttr;
            }
        }
    }
    return e;
}

/* Per call site, in front of that table: each aget/aset/get_ll/... written in the source has
 * its own one-entry inline cache (IC(): a static made by the macro's expansion, as the
 * interpreter keeps one per LOAD_ATTR instruction): the type it saw last and that type's
 * version tag. A hit is a compare and a load; a miss (another type at that site, or the type
 * changed) refills it from the table above. A type's version tag is never reused, so a
 * stale pointer in an inline cache can only miss. */
typedef struct {
    PyTypeObject *type;    /* borrowed: the table above holds the reference */
    unsigned int version;  /* 0: empty */
    int writable;
    Py_ssize_t off;
    PyObject *cval;
} ic_t;

#define IC() ({ static ic_t ic_; &ic_; })

static inline void ic_check(ic_t *ic, PyTypeObject *tp, PyObject *name) {
    if (ic->type == tp && ic->version == tp->tp_version_tag && ic->version != 0
        && (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG))
        return;
    ac_entry *e = ac_find(tp, name);
    ic->type = tp;
    ic->version = e->version;
    ic->off = e->off;
    ic->cval = e->cval;
    ic->writable = e->writable;
}

/* o.name, a new reference (NULL with an exception set) */
static inline PyObject *aget_ic(ic_t *ic, PyObject *o, PyObject *name) {
    ic_check(ic, Py_TYPE(o), name);
    if (ic->off) {
        PyObject *v = *(PyObject **)((char *)o + ic->off);
        if (v != NULL) return Py_NewRef(v);
    } else if (ic->cval != NULL) {
        return Py_NewRef(ic->cval);
    }
    return PyObject_GetAttr(o, name);
}

/* o.name = v (a new reference taken); 0, or -1 with an exception set */
static inline int aset_ic(ic_t *ic, PyObject *o, PyObject *name, PyObject *v) {
    ic_check(ic, Py_TYPE(o), name);
    if (ic->off && ic->writable) {
        PyObject **slot = (PyObject **)((char *)o + ic->off);
        PyObject *old = *slot;
        *slot = Py_NewRef(v);
        Py_XDECREF(old);
        return 0;
    }
    return PyObject_SetAttr(o, name, v);
}

/* obj.name as a C integer (the hook countdowns, counters); -1 with an exception set on error */
static inline int get_ll_ic(ic_t *ic, PyObject *obj, PyObject *name, long long *out) {
    PyObject *v = aget_ic(ic, obj, name);
    if (v == NULL) return -1;
    *out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static inline int set_ll_ic(ic_t *ic, PyObject *obj, PyObject *name, long long v) {
    PyObject *o = PyLong_FromLongLong(v);
    if (o == NULL) return -1;
    int r = aset_ic(ic, obj, name, o);
    Py_DECREF(o);
    return r;
}

/* obj.name += n */
static inline int add_ll_ic(ic_t *ic, PyObject *obj, PyObject *name, long long n) {
    long long v;
    if (get_ll_ic(ic, obj, name, &v) < 0) return -1;
    return set_ll_ic(ic, obj, name, v + n);
}

/* truth of o.name: 1, 0, or -1 with an exception set */
static inline int attr_true_ic(ic_t *ic, PyObject *o, PyObject *name) {
    PyObject *v = aget_ic(ic, o, name);
    if (v == NULL) return -1;
    int r = v == Py_True ? 1 : v == Py_False || v == Py_None ? 0 : PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

#define aget(o, name) aget_ic(IC(), (o), (name))
#define aset(o, name, v) aset_ic(IC(), (o), (name), (v))
#define get_ll(o, name, out) get_ll_ic(IC(), (o), (name), (out))
#define set_ll(o, name, v) set_ll_ic(IC(), (o), (name), (v))
#define add_ll(o, name, n) add_ll_ic(IC(), (o), (name), (n))
#define attr_true(o, name) attr_true_ic(IC(), (o), (name))

/* A connection's fifo is a collections.deque: its append and popleft are called through the
 * type's method descriptors (a vectorcall) rather than looked up by name on every call. */
static PyTypeObject *deque_type;
static PyObject *deque_append, *deque_popleft;

static inline PyObject *fifo_popleft(PyObject *fifo) {
    if (Py_IS_TYPE(fifo, deque_type)) return PyObject_Vectorcall(deque_popleft, &fifo, 1, NULL);
    return PyObject_CallMethodNoArgs(fifo, s_popleft);
}

static inline int fifo_append(PyObject *fifo, PyObject *x) {
    PyObject *r;
    if (Py_IS_TYPE(fifo, deque_type)) {
        PyObject *a[2] = {fifo, x};
        r = PyObject_Vectorcall(deque_append, a, 2, NULL);
    } else {
        r = PyObject_CallMethodOneArg(fifo, s_append, x);
    }
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * CRC16-XMODEM (poly 0x1021, init 0) and Redis Cluster's hash-tag rule
 * ---------------------------------------------------------------------------------------- */

static uint16_t crc_tab[256];

static void crc_init(void) {
    for (int i = 0; i < 256; i++) {
        unsigned c = (unsigned)i << 8;
        for (int j = 0; j < 8; j++) c = (c & 0x8000) ? ((c << 1) ^ 0x1021) : (c << 1);
        crc_tab[i] = (uint16_t)(c & 0xffff);
    }
}

static inline unsigned crc16_buf(const unsigned char *p, Py_ssize_t n) {
    unsigned c = 0;
    for (Py_ssize_t i = 0; i < n; i++) c = ((c << 8) ^ crc_tab[((c >> 8) ^ p[i]) & 0xff]) & 0xffff;
    return c;
}

/* The hashed part of a key: the first non-empty {...} tag, else the whole key. */
static inline unsigned key_hash(const unsigned char *p, Py_ssize_t n) {
    const unsigned char *open = memchr(p, '{', (size_t)n);
    if (open != NULL) {
        Py_ssize_t s = open - p + 1;
        const unsigned char *close = memchr(p + s, '}', (size_t)(n - s));
        if (close != NULL && close - p > s) return crc16_buf(p + s, close - p - s);
    }
    return crc16_buf(p, n);
}

static PyObject *py_crc16(PyObject *self, PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    unsigned c = crc16_buf(b.buf, b.len);
    PyBuffer_Release(&b);
    return PyLong_FromLong((long)c);
}

static PyObject *py_key_slot(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "key_slot(key, nslots=16384)");
        return NULL;
    }
    long nslots = 16384;
    if (nargs == 2) {
        nslots = PyLong_AsLong(args[1]);
        if (nslots == -1 && PyErr_Occurred()) return NULL;
    }
    Py_buffer b;
    if (PyObject_GetBuffer(args[0], &b, PyBUF_SIMPLE) < 0) return NULL;
    unsigned c = key_hash(b.buf, b.len);
    PyBuffer_Release(&b);
    return PyLong_FromLong((long)(c & (unsigned long)(nslots - 1)));
}

/* ------------------------------------------------------------------------------------------
 * Canonical command packing (hiredis.pack_command for bytes arguments)
 * ---------------------------------------------------------------------------------------- */

static inline int ndigits(Py_ssize_t v) {
    int d = 1;
    while (v >= 10) { v /= 10; d++; }
    return d;
}

static inline char *put_header(char *w, char type, Py_ssize_t v) {
    *w++ = type;
    int d = ndigits(v);
    for (int k = d - 1; k >= 0; k--) { w[k] = (char)('0' + v % 10); v /= 10; }
    w += d;
    *w++ = '\r';
    *w++ = '\n';
    return w;
}

/*
 * An argument the parser did not copy: the bytes [ptr, ptr + len) of the read `src` it came
 * in. Only arguments of at least ARGREF_MIN bytes that the fast path does not read (values:
 * see lazy_at), and only on the compiled client's read (RequestParser.lazy): the fast path
 * copies MSET's once, into the sub-request of their group, or not at all when every key is
 * on one group, and forwards a single-key request as it came (its value is never copied). Above
 * pymalloc's 512-byte limit a bytes object is malloc'ed and freed; below, a copy costs no more
 * than this reference. Python code never sees one: every request the fast path does not serve
 * is given real bytes first (materialize), a request still incomplete at the end of a read
 * too, and the Python feed() never makes them.
 */
#define ARGREF_MIN 512
typedef struct {
    PyObject_HEAD
    PyObject *src;  /* bytes */
    const char *ptr;
    Py_ssize_t len;
} ArgRef;

static void argref_dealloc(ArgRef *self) {
    Py_XDECREF(self->src);
    PyObject_Free(self);
}

static PyTypeObject ArgRefType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._accel._speedups.ArgRef",
    .tp_basicsize = sizeof(ArgRef),
    .tp_dealloc = (destructor)argref_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Internal: an argument left in the read it came in (never handed to Python).",
};

static inline const char *arg_data(PyObject *b, Py_ssize_t *n) {
    if (Py_IS_TYPE(b, &ArgRefType)) {
        *n = ((ArgRef *)b)->len;
        return ((ArgRef *)b)->ptr;
    }
    *n = PyBytes_GET_SIZE(b);
    return PyBytes_AS_STRING(b);
}

static inline int is_arg(PyObject *b) {
    return PyBytes_Check(b) || Py_IS_TYPE(b, &ArgRefType);
}

static int append_ref(PyObject *list, PyObject *src, const char *p, Py_ssize_t n) {
    ArgRef *r = PyObject_New(ArgRef, &ArgRefType);
    if (r == NULL) return -1;
    Py_INCREF(src);
    r->src = src;
    r->ptr = p;
    r->len = n;
    int e = PyList_Append(list, (PyObject *)r);
    Py_DECREF(r);
    return e;
}

/* Every ArgRef in argv replaced by its bytes: 0, or -1 with an exception set. */
static int materialize_argv(PyObject *argv) {
    if (!PyList_Check(argv)) return 0;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(argv); k++) {
        PyObject *a = PyList_GET_ITEM(argv, k);
        if (!Py_IS_TYPE(a, &ArgRefType)) continue;
        PyObject *b = PyBytes_FromStringAndSize(((ArgRef *)a)->ptr, ((ArgRef *)a)->len);
        if (b == NULL) return -1;
        PyList_SET_ITEM(argv, k, b);  /* the list's reference to the ArgRef: dropped below */
        Py_DECREF(a);
    }
    return 0;
}

/* materialize_argv over reqs[from:]; 0, or -1 with an exception set. */
static int materialize(PyObject *reqs, Py_ssize_t from) {
    for (Py_ssize_t i = from; i < PyList_GET_SIZE(reqs); i++)
        if (materialize_argv(PyList_GET_ITEM(reqs, i)) < 0) return -1;
    return 0;
}

static inline char *put_bulk(char *w, PyObject *b) {
    Py_ssize_t n;
    const char *d = arg_data(b, &n);
    w = put_header(w, '$', n);
    memcpy(w, d, (size_t)n);
    w += n;
    *w++ = '\r';
    *w++ = '\n';
    return w;
}

static inline Py_ssize_t bulk_size(PyObject *b) {
    Py_ssize_t n;
    arg_data(b, &n);
    return 1 + ndigits(n) + 2 + n + 2;
}

/* The canonical encoding of a list of bytes. */
static PyObject *pack_list(PyObject *argv) {
    Py_ssize_t n = PyList_GET_SIZE(argv);
    Py_ssize_t size = 1 + ndigits(n) + 2;
    for (Py_ssize_t i = 0; i < n; i++) size += bulk_size(PyList_GET_ITEM(argv, i));
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) return NULL;
    char *w = put_header(PyBytes_AS_STRING(out), '*', n);
    for (Py_ssize_t i = 0; i < n; i++) w = put_bulk(w, PyList_GET_ITEM(argv, i));
    return out;
}

/* ------------------------------------------------------------------------------------------
 * Inline requests: sdssplitargs (twin: split_inline_args)
 * ---------------------------------------------------------------------------------------- */

static inline int c_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}
static inline int is_hex(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static inline int hex_val(unsigned char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* A growable byte buffer for one argument. */
typedef struct { char *p; Py_ssize_t n, cap; } cur_t;

static int cur_put(cur_t *c, unsigned char ch) {
    if (c->n == c->cap) {
        Py_ssize_t cap = c->cap ? c->cap * 2 : 64;
        char *p = PyMem_Realloc(c->p, (size_t)cap);
        if (p == NULL) { PyErr_NoMemory(); return -1; }
        c->p = p;
        c->cap = cap;
    }
    c->p[c->n++] = (char)ch;
    return 0;
}

static int append_new_bytes(PyObject *list, const char *p, Py_ssize_t n);

/* Command names (argv[0]) are few and repeat on every request: the parser hands out one
 * shared bytes object per name from this small table instead of a new one each time, so the
 * object is not allocated again and its hash (the command lookups are dicts keyed by bytes)
 * is computed once. Direct-mapped; a collision replaces the entry (bounded: NC_SIZE names of
 * at most NC_NAME_MAX bytes). */
#define NC_NAME_MAX 24
#define NC_SIZE 64
static PyObject *nc_tab[NC_SIZE];

static int append_name(PyObject *list, const char *p, Py_ssize_t n) {
    if (n > NC_NAME_MAX || n == 0) return append_new_bytes(list, p, n);
    uint32_t h = 2166136261u;  /* FNV-1a */
    for (Py_ssize_t k = 0; k < n; k++) h = (h ^ (unsigned char)p[k]) * 16777619u;
    PyObject **e = &nc_tab[(h ^ (h >> 16)) & (NC_SIZE - 1)];
    PyObject *b = *e;
    if (b == NULL || PyBytes_GET_SIZE(b) != n || memcmp(PyBytes_AS_STRING(b), p, n) != 0) {
        b = PyBytes_FromStringAndSize(p, n);
        if (b == NULL) return -1;
        if (PyObject_Hash(b) == -1) { Py_DECREF(b); return -1; }
        Py_XSETREF(*e, b);  /* the table's reference */
    }
    return PyList_Append(list, b);
}

static int append_new_bytes(PyObject *list, const char *p, Py_ssize_t n) {
    PyObject *b = PyBytes_FromStringAndSize(p, n);
    if (b == NULL) return -1;
    int r = PyList_Append(list, b);
    Py_DECREF(b);
    return r;
}

/* Returns a new list, Py_None (new ref) on unbalanced quotes, NULL on error. */
static PyObject *split_args(const unsigned char *line, Py_ssize_t n) {
    PyObject *args = PyList_New(0);
    if (args == NULL) return NULL;
    int slow = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        unsigned char c = line[k];
        if (c == '"' || c == '\'' || c == 0 || c == '\v' || c == '\f') { slow = 1; break; }
    }
    if (!slow) {
        /* bytes.split(): without the special characters this is sdssplitargs. */
        Py_ssize_t i = 0;
        while (1) {
            while (i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r')) i++;
            if (i >= n) return args;
            Py_ssize_t s = i;
            while (i < n && !(line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r')) i++;
            if (append_new_bytes(args, (const char *)line + s, i - s) < 0) { Py_DECREF(args); return NULL; }
        }
    }
    /* Byte-for-byte port of sdssplitargs; C reads past the end as NUL, hence AT(). */
    const unsigned char *nul = memchr(line, 0, (size_t)n);
    if (nul != NULL) n = nul - line;
#define AT(j) ((j) < n ? line[(j)] : 0)
    Py_ssize_t i = 0;
    cur_t cur = {NULL, 0, 0};
    while (1) {
        while (i < n && c_space(line[i])) i++;
        if (i >= n) { PyMem_Free(cur.p); return args; }
        cur.n = 0;
        int inq = 0, insq = 0, done = 0;
        while (!done) {
            unsigned char c = AT(i);
            int r = 0;
            if (inq) {
                if (c == '\\' && AT(i + 1) == 'x' && is_hex(AT(i + 2)) && is_hex(AT(i + 3))) {
                    r = cur_put(&cur, (unsigned char)(hex_val(line[i + 2]) * 16 + hex_val(line[i + 3])));
                    i += 3;
                } else if (c == '\\' && AT(i + 1)) {
                    i++;
                    unsigned char e = line[i];
                    switch (e) {
                    case 'n': e = '\n'; break;
                    case 'r': e = '\r'; break;
                    case 't': e = '\t'; break;
                    case 'b': e = '\b'; break;
                    case 'a': e = '\a'; break;
                    }
                    r = cur_put(&cur, e);
                } else if (c == '"') {
                    if (AT(i + 1) && !c_space(AT(i + 1))) goto unbalanced;
                    done = 1;
                } else if (c == 0) {
                    goto unbalanced;
                } else {
                    r = cur_put(&cur, c);
                }
            } else if (insq) {
                if (c == '\\' && AT(i + 1) == '\'') {
                    i++;
                    r = cur_put(&cur, '\'');
                } else if (c == '\'') {
                    if (AT(i + 1) && !c_space(AT(i + 1))) goto unbalanced;
                    done = 1;
                } else if (c == 0) {
                    goto unbalanced;
                } else {
                    r = cur_put(&cur, c);
                }
            } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == 0) {
                done = 1;
            } else if (c == '"') {
                inq = 1;
            } else if (c == '\'') {
                insq = 1;
            } else {
                r = cur_put(&cur, c);
            }
            if (r < 0) { PyMem_Free(cur.p); Py_DECREF(args); return NULL; }
            if (AT(i)) i++;
        }
        if (append_new_bytes(args, cur.p ? cur.p : "", cur.n) < 0) {
            PyMem_Free(cur.p);
            Py_DECREF(args);
            return NULL;
        }
    }
unbalanced:
    PyMem_Free(cur.p);
    Py_DECREF(args);
    Py_RETURN_NONE;
#undef AT
}

static PyObject *py_split_inline_args(PyObject *self, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "split_inline_args() takes bytes");
        return NULL;
    }
    return split_args((const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg));
}

/* ------------------------------------------------------------------------------------------
 * RequestParser (twin: proxy.protocol.request.PyRequestParser)
 * ---------------------------------------------------------------------------------------- */

enum { ST_IDLE = 0, ST_INLINE = 1, ST_COUNT = 2, ST_HDR = 3, ST_DATA = 4 };

typedef struct {
    PyObject_HEAD
    PyObject *limits;
    PyObject *packed;  /* list: canonical encoding of each request of the last feed() */
    PyObject *error;   /* str or None */
    Py_ssize_t max_bulk, max_mb, max_inline;
    int state;
    PyObject *argv;    /* the multibulk request in progress (state HDR/DATA), or NULL */
    Py_ssize_t left, bulklen;
    /* Unconsumed bytes, from the first byte of the unit waited for (as the twin's _pend).
     * NULL while nothing is pending: an idle connection holds no buffer. */
    char *buf;
    Py_ssize_t len, cap;
    /* metrics: calls[argv[0]] += 1 for each request parsed (Meter.raw_calls), or NULL */
    PyObject *calls;
    /* set by the compiled client around its feed: big values may be left as ArgRefs */
    int lazy;
    /* the last feed's output may hold ArgRefs (the caller must materialize what it hands on) */
    int has_refs;
} RequestParser;

static int count_names(PyObject *calls, PyObject *reqs);
static PyTypeObject CallCountsType;

static int rp_init(RequestParser *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"limits", "calls", NULL};
    PyObject *limits = NULL, *calls = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO", kwlist, &limits, &calls)) return -1;
    if (calls == Py_None) calls = NULL;
    if (calls != NULL && !PyDict_CheckExact(calls) && !Py_IS_TYPE(calls, &CallCountsType)) {
        PyErr_SetString(PyExc_TypeError,
                        "RequestParser(): calls must be a dict, a CallCounts or None");
        return -1;
    }
    Py_XINCREF(calls);
    Py_XSETREF(self->calls, calls);
    if (limits == NULL || limits == Py_None) {
        PyObject *mod = PyImport_ImportModule("proxy.protocol.request");
        if (mod == NULL) return -1;
        PyObject *cls = PyObject_GetAttrString(mod, "Limits");
        Py_DECREF(mod);
        if (cls == NULL) return -1;
        limits = PyObject_CallNoArgs(cls);
        Py_DECREF(cls);
        if (limits == NULL) return -1;
    } else {
        Py_INCREF(limits);
    }
    Py_XSETREF(self->limits, limits);
    PyObject *v;
    if ((v = aget(limits, s_max_bulk_len)) == NULL) return -1;
    self->max_bulk = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    if ((v = aget(limits, s_max_multibulk_len)) == NULL) return -1;
    self->max_mb = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    if ((v = aget(limits, s_max_inline_len)) == NULL) return -1;
    self->max_inline = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    if (PyErr_Occurred()) return -1;
    Py_XSETREF(self->packed, PyList_New(0));
    if (self->packed == NULL) return -1;
    Py_INCREF(Py_None);
    Py_XSETREF(self->error, Py_None);
    self->state = ST_IDLE;
    Py_CLEAR(self->argv);
    self->left = self->bulklen = 0;
    PyMem_Free(self->buf);
    self->buf = NULL;
    self->len = self->cap = 0;
    return 0;
}

static void rp_dealloc(RequestParser *self) {
    Py_XDECREF(self->calls);
    Py_XDECREF(self->limits);
    Py_XDECREF(self->packed);
    Py_XDECREF(self->error);
    Py_XDECREF(self->argv);
    PyMem_Free(self->buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void rp_fail(RequestParser *self, PyObject *msg) {
    /* steals msg */
    Py_XSETREF(self->error, msg);
    PyMem_Free(self->buf);
    self->buf = NULL;
    self->len = self->cap = 0;
    Py_CLEAR(self->argv);
}

static int rp_fail_str(RequestParser *self, const char *msg) {
    PyObject *m = PyUnicode_FromString(msg);
    if (m == NULL) return -1;
    rp_fail(self, m);
    return 0;
}

/* Keep p[0:n] as the pending bytes (p may point into self->buf). */
static int rp_keep(RequestParser *self, const char *p, Py_ssize_t n) {
    if (n == 0) {
        PyMem_Free(self->buf);
        self->buf = NULL;
        self->len = self->cap = 0;
        return 0;
    }
    if (self->buf != NULL && p >= self->buf && p < self->buf + self->cap) {
        memmove(self->buf, p, (size_t)n);
        self->len = n;
        return 0;
    }
    if (self->cap < n) {
        char *b = PyMem_Realloc(self->buf, (size_t)n);
        if (b == NULL) { PyErr_NoMemory(); return -1; }
        self->buf = b;
        self->cap = n;
    }
    memcpy(self->buf, p, (size_t)n);
    self->len = n;
    return 0;
}

/* Redis string2ll for a multibulk count: 1 ok (value in *out, clamped), 0 invalid. */
static int parse_count(const unsigned char *s, Py_ssize_t n, long long *out) {
    int neg = 0;
    const unsigned char *d = s;
    Py_ssize_t nd = n;
    if (n >= 1 && s[0] == '-') {
        if (n < 2 || n >= 21 || s[1] == '0') return 0;
        neg = 1;
        d = s + 1;
        nd = n - 1;
    } else {
        if (n < 1 || n >= 21 || (n > 1 && s[0] == '0')) return 0;
    }
    unsigned long long v = 0;
    int over = 0;
    for (Py_ssize_t i = 0; i < nd; i++) {
        if (d[i] < '0' || d[i] > '9') return 0;
        unsigned dig = d[i] - '0';
        if (v > (ULLONG_MAX - dig) / 10) over = 1;
        else v = v * 10 + dig;
    }
    if (neg) {
        if (over || v > 9223372036854775808ULL) return 0; /* below LLONG_MIN */
        *out = -1;  /* only its sign matters: skipped */
        return 1;
    }
    *out = (over || v > (unsigned long long)LLONG_MAX) ? LLONG_MAX : (long long)v;
    return 1;
}

/* A bulk length: ASCII digits, < 21 of them, no leading zero. 1 ok, 0 invalid. */
static int parse_bulklen(const unsigned char *s, Py_ssize_t n, long long *out) {
    if (n < 1 || n >= 21 || (s[0] == '0' && n > 1)) return 0;
    unsigned long long v = 0;
    int over = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        unsigned dig = s[i] - '0';
        if (v > (ULLONG_MAX - dig) / 10) over = 1;
        else v = v * 10 + dig;
    }
    *out = (over || v > (unsigned long long)LLONG_MAX) ? LLONG_MAX : (long long)v;
    return 1;
}

static inline const unsigned char *find_byte(const unsigned char *p, Py_ssize_t from,
                                             Py_ssize_t n, unsigned char c) {
    return from < n ? memchr(p + from, c, (size_t)(n - from)) : NULL;
}

/*
 * The Redis state machine over p[0:n] (twin: _RequestParserBase._parse). `src` is the bytes
 * object p belongs to, or NULL when p is the parser's own buffer. `canon_from` is where the
 * bytes of the request in progress start if that request began in p (else -1): a request
 * whose bytes are canonical is forwarded as a slice of the input, with no re-packing.
 * Returns 0, or -1 with an exception set.
 */
static inline int name_is(const char *c, Py_ssize_t n, const char *upper) {
    Py_ssize_t k = 0;
    for (; k < n && upper[k]; k++)
        if ((c[k] & ~0x20) != upper[k]) return 0;
    return k == n && upper[k] == 0;
}

/* May argument `ai` (>= 2) of a request named `name` stay in the read (an ArgRef)? Not the
 * keys of the split commands, which the fast path reads: of MSET only the values (even
 * positions), of MGET, DEL, UNLINK, EXISTS and TOUCH nothing. Any other command, yes: of a
 * single-key command the fast path reads only argv[0] and argv[1], and a request it does not
 * serve gets real bytes before Python sees it. (Command names are ASCII letters: clearing
 * bit 0x20 upper-cases them, and maps no other byte onto a letter that matters here.) */
static inline int lazy_at(PyObject *name, Py_ssize_t ai) {
    if (!PyBytes_Check(name)) return 0;
    const char *c = PyBytes_AS_STRING(name);
    Py_ssize_t n = PyBytes_GET_SIZE(name);
    if (n == 4 && name_is(c, n, "MSET")) return (ai & 1) == 0;
    if (n == 3) return !name_is(c, n, "DEL");
    if (n == 4) return !name_is(c, n, "MGET");
    if (n == 5) return !name_is(c, n, "TOUCH");
    if (n == 6) return !name_is(c, n, "UNLINK") && !name_is(c, n, "EXISTS");
    return 1;
}

static int rp_parse(RequestParser *self, PyObject *src, const unsigned char *p, Py_ssize_t n,
                    Py_ssize_t canon_from, PyObject *out) {
    Py_ssize_t pos = 0;
    Py_ssize_t max_inline = self->max_inline;
    int state = self->state;
    PyObject *argv = self->argv; /* owned by self->argv */
    Py_ssize_t left = self->left, bulklen = self->bulklen;
    Py_ssize_t req_start = canon_from;  /* -1: not canonical (or began before p) */
    PyObject *packed = self->packed;
    self->argv = NULL;

#define FAIL(msg) do { Py_XDECREF(argv); argv = NULL; if (rp_fail_str(self, msg) < 0) goto error; return 0; } while (0)

    while (pos < n) {
        if (state == ST_IDLE) {
            if (p[pos] == '*') {
                state = ST_COUNT;
            } else {
                state = ST_INLINE;
            }
        }
        if (state == ST_INLINE) {
            const unsigned char *nlp = find_byte(p, pos, n, '\n');
            if (nlp == NULL) {
                if (n - pos > max_inline) FAIL("too big inline request");
                break;
            }
            /* No limit on a complete line, as Redis's processInlineBuffer. */
            Py_ssize_t nl = nlp - p;
            Py_ssize_t end = (nl > pos && p[nl - 1] == '\r') ? nl - 1 : nl;
            PyObject *args = split_args(p + pos, end - pos);
            if (args == NULL) goto error;
            if (args == Py_None) {
                Py_DECREF(args);
                FAIL("unbalanced quotes in request");
            }
            pos = nl + 1;
            state = ST_IDLE;
            if (PyList_GET_SIZE(args)) {  /* blank lines are skipped silently */
                PyObject *pk = pack_list(args);
                if (pk == NULL || PyList_Append(out, args) < 0 || PyList_Append(packed, pk) < 0) {
                    Py_XDECREF(pk);
                    Py_DECREF(args);
                    goto error;
                }
                Py_DECREF(pk);
            }
            Py_DECREF(args);
            continue;
        }
        if (state == ST_COUNT) {
            /* The line ends at the first "\r"; the byte after it is skipped. */
            const unsigned char *crp = find_byte(p, pos, n, '\r');
            if (crp == NULL) {
                if (n - pos > max_inline) FAIL("too big mbulk count string");
                req_start = pos;
                break;
            }
            Py_ssize_t cr = crp - p;
            if (cr - pos > max_inline) FAIL("too big mbulk count string");
            if (cr + 1 >= n) { req_start = pos; break; }
            long long count;
            if (!parse_count(p + pos + 1, cr - pos - 1, &count) || count > self->max_mb)
                FAIL("invalid multibulk length");
            req_start = p[cr + 1] == '\n' ? pos : -1;
            pos = cr + 2;
            if (count <= 0) {  /* "*0" and "*-1" are skipped silently, as Redis does */
                state = ST_IDLE;
                continue;
            }
            left = (Py_ssize_t)count;
            /* Pre-sized only up to a bound: the count is the client's word, not yet its bytes. */
            argv = PyList_New(0);
            if (argv == NULL) goto error;
            state = ST_HDR;
        }
        /* Elements of a multibulk request (state HDR or DATA). */
        while (1) {
            if (state == ST_HDR) {
                const unsigned char *crp = find_byte(p, pos, n, '\r');
                if (crp == NULL) {
                    if (n - pos > max_inline) FAIL("too big bulk count string");
                    break;
                }
                Py_ssize_t cr = crp - p;
                if (cr - pos > max_inline) FAIL("too big bulk count string");
                if (cr + 1 >= n) break;
                if (p[pos] != '$') {
                    PyObject *got = PyUnicode_DecodeUTF8((const char *)p + pos, 1, "surrogateescape");
                    if (got == NULL) goto error;
                    PyObject *msg = PyUnicode_FromFormat("expected '$', got '%U'", got);
                    Py_DECREF(got);
                    if (msg == NULL) goto error;
                    Py_XDECREF(argv);
                    argv = NULL;
                    rp_fail(self, msg);
                    return 0;
                }
                long long bl;
                if (!parse_bulklen(p + pos + 1, cr - pos - 1, &bl) || bl > self->max_bulk)
                    FAIL("invalid bulk length");
                if (p[cr + 1] != '\n') req_start = -1;
                bulklen = (Py_ssize_t)bl;
                pos = cr + 2;
                state = ST_DATA;
            }
            if (bulklen + 2 > n - pos) break;
            Py_ssize_t end = pos + bulklen;
            Py_ssize_t ai = PyList_GET_SIZE(argv);
            int e;
            if (ai == 0) {
                e = append_name(argv, (const char *)p + pos, bulklen);
            } else if (bulklen >= ARGREF_MIN && self->lazy && src != NULL && ai >= 2
                       && lazy_at(PyList_GET_ITEM(argv, 0), ai)) {
                e = append_ref(argv, src, (const char *)p + pos, bulklen);
                self->has_refs = 1;
            } else {
                e = append_new_bytes(argv, (const char *)p + pos, bulklen);
            }
            if (e < 0) goto error;
            if (p[end] != '\r' || p[end + 1] != '\n') req_start = -1;
            pos = end + 2;  /* the 2 bytes after the data are not checked, as in Redis */
            left -= 1;
            if (!left) {
                PyObject *pk;
                if (req_start >= 0) {
                    if (src != NULL && req_start == 0 && pos == n) {
                        pk = src;
                        Py_INCREF(pk);
                    } else {
                        pk = PyBytes_FromStringAndSize((const char *)p + req_start, pos - req_start);
                    }
                } else {
                    pk = pack_list(argv);
                }
                if (pk == NULL || PyList_Append(out, argv) < 0 || PyList_Append(packed, pk) < 0) {
                    Py_XDECREF(pk);
                    goto error;
                }
                Py_DECREF(pk);
                Py_CLEAR(argv);
                state = ST_IDLE;
                break;
            }
            state = ST_HDR;
        }
        if (state != ST_IDLE) break;
    }
#undef FAIL
    self->state = state;
    self->argv = argv;
    self->left = left;
    self->bulklen = bulklen;
    if (state == ST_IDLE) return rp_keep(self, NULL, 0);
    return rp_keep(self, (const char *)p + pos, n - pos);
error:
    Py_XDECREF(argv);
    self->argv = NULL;
    return -1;
}

static PyObject *rp_feed(RequestParser *self, PyObject *data) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    PyObject *packed = PyList_New(0);
    if (packed == NULL) { Py_DECREF(out); return NULL; }
    Py_SETREF(self->packed, packed);
    if (self->error != Py_None) return out;
    self->has_refs = 0;
    PyObject *bytes;
    if (PyBytes_CheckExact(data)) {
        bytes = data;
        Py_INCREF(bytes);
    } else {
        bytes = PyBytes_FromObject(data);
        if (bytes == NULL) { Py_DECREF(out); return NULL; }
    }
    Py_ssize_t n = PyBytes_GET_SIZE(bytes);
    if (n == 0) { Py_DECREF(bytes); return out; }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(bytes);
    int r;
    if (self->len == 0) {
        r = rp_parse(self, bytes, p, n, -1, out);
    } else {
        /* Bytes are pending: extend them, growing to at most what the unit waited for needs
         * (a bulk's whole length is known), so a huge value costs one copy per arrival. */
        Py_ssize_t need = self->len + n;
        if (need > self->cap) {
            Py_ssize_t cap = self->cap * 2;
            if (cap < need) cap = need;
            if (self->state == ST_DATA && cap > self->bulklen + 2 && need <= self->bulklen + 2)
                cap = self->bulklen + 2;
            char *b = PyMem_Realloc(self->buf, (size_t)cap);
            if (b == NULL) { Py_DECREF(bytes); Py_DECREF(out); return PyErr_NoMemory(); }
            self->buf = b;
            self->cap = cap;
        }
        memcpy(self->buf + self->len, p, (size_t)n);
        self->len = need;
        Py_ssize_t canon = (self->state == ST_COUNT || self->state == ST_INLINE) ? 0 : -1;
        r = rp_parse(self, NULL, (const unsigned char *)self->buf, self->len, canon, out);
        if (r == 0 && self->buf != NULL && self->cap > 65536 && self->len < self->cap / 4) {
            /* Don't keep a big buffer around for a small tail. */
            char *b = PyMem_Realloc(self->buf, (size_t)(self->len ? self->len : 1));
            if (b != NULL) { self->buf = b; self->cap = self->len ? self->len : 1; }
        }
    }
    Py_DECREF(bytes);
    /* A request still incomplete keeps real bytes: an ArgRef would pin the whole read (up to
     * the loop's read size) for as long as the client takes to send the rest. So an ArgRef
     * never outlives the feed that made it, except in the requests it returns. */
    if (r == 0 && self->has_refs && self->argv != NULL && materialize_argv(self->argv) < 0)
        r = -1;
    if (r < 0) {
        Py_DECREF(out);
        return NULL;
    }
    /* The metrics hook's exact call count, every request of this read (as the Python path
     * counts what feed() returns, in data_received). */
    if (self->calls != NULL && PyList_GET_SIZE(out) && count_names(self->calls, out) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *rp_get_pending(RequestParser *self, void *c) {
    return PyLong_FromSsize_t(self->len);
}

static PyMethodDef rp_methods[] = {
    {"feed", (PyCFunction)rp_feed, METH_O,
     "Every request completed by data, in order, each as an argv list (sets packed, error)."},
    {NULL}
};

static PyMemberDef rp_members[] = {
    {"limits", T_OBJECT, offsetof(RequestParser, limits), READONLY, NULL},
    {"packed", T_OBJECT, offsetof(RequestParser, packed), READONLY, NULL},
    {"error", T_OBJECT, offsetof(RequestParser, error), READONLY, NULL},
    {NULL}
};

static PyGetSetDef rp_getset[] = {
    {"pending_bytes", (getter)rp_get_pending, NULL, "bytes held for an incomplete request", NULL},
    {NULL}
};

static PyTypeObject RequestParserType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._accel._speedups.RequestParser",
    .tp_basicsize = sizeof(RequestParser),
    .tp_dealloc = (destructor)rp_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Client request parser with Redis 7 semantics (compiled twin of PyRequestParser).",
    .tp_methods = rp_methods,
    .tp_members = rp_members,
    .tp_getset = rp_getset,
    .tp_init = (initproc)rp_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------------------------
 * ReplyReader (twin: slotcore.resp.ReplyReader)
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    char *buf;            /* the incomplete reply, from its first byte */
    Py_ssize_t len, cap;
    Py_ssize_t need;      /* no progress possible before the buffer holds this many bytes */
    Py_ssize_t scan;      /* offset in buf of the next reply to frame */
    Py_ssize_t *outer;    /* replies still missing in each open aggregate */
    Py_ssize_t nouter, capouter;
    Py_ssize_t errors;
} ReplyReader;

static void bad_reply(const char *p, Py_ssize_t n, Py_ssize_t pos) {
    Py_ssize_t k = n - pos < 32 ? n - pos : 32;
    PyObject *b = PyBytes_FromStringAndSize(p + pos, k < 0 ? 0 : k);
    if (b == NULL) return;
    PyObject *r = PyObject_Repr(b);
    Py_DECREF(b);
    if (r == NULL) return;
    PyObject *msg = PyUnicode_FromFormat("invalid reply at offset %zd: %U", pos, r);
    Py_DECREF(r);
    if (msg == NULL) return;
    PyErr_SetObject(ProtocolError, msg);
    Py_DECREF(msg);
}

static inline Py_ssize_t find_crlf(const char *p, Py_ssize_t from, Py_ssize_t n) {
    while (from < n) {
        const char *cr = memchr(p + from, '\r', (size_t)(n - from));
        if (cr == NULL || cr + 1 >= p + n) return -1;
        if (cr[1] == '\n') return cr - p;
        from = cr - p + 1;
    }
    return -1;
}

#define HUGE_LEN (PY_SSIZE_T_MAX / 8)

/* Python's int() of p[s:e] (a length field), clamped to +-HUGE_LEN. -1 with ProtocolError
 * set (offset `at`) when int() would raise ValueError; -2 on another error. */
static int parse_len(const char *p, Py_ssize_t n, Py_ssize_t s, Py_ssize_t e, Py_ssize_t at,
                     Py_ssize_t *out) {
    Py_ssize_t i = s;
    int neg = 0;
    if (i < e && p[i] == '-') { neg = 1; i++; }
    if (i < e && e - i <= 17) {
        Py_ssize_t v = 0;
        Py_ssize_t j = i;
        for (; j < e; j++) {
            unsigned char c = (unsigned char)p[j];
            if (c < '0' || c > '9') break;
            v = v * 10 + (c - '0');
        }
        if (j == e) { *out = neg ? -v : v; return 0; }
    }
    /* Anything else ("+5", " 5", "1_0", huge): exactly what int() says. */
    PyObject *b = PyBytes_FromStringAndSize(p + s, e - s);
    if (b == NULL) return -2;
    PyObject *v = PyNumber_Long(b);
    Py_DECREF(b);
    if (v == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            bad_reply(p, n, at);
            return -1;
        }
        return -2;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) return -2;
    if (overflow > 0 || x > HUGE_LEN) x = HUGE_LEN;
    if (overflow < 0 || x < -HUGE_LEN) x = -HUGE_LEN;
    *out = (Py_ssize_t)x;
    return 0;
}

static inline int is_line_type(unsigned char t) {
    return t == '+' || t == '-' || t == ':' || t == '_' || t == ',' || t == '#' || t == '(';
}
static inline int is_blob_type(unsigned char t) { return t == '$' || t == '!' || t == '='; }
static inline int is_agg_type(unsigned char t) {
    return t == '*' || t == '~' || t == '>' || t == '%' || t == '|';
}

static int agg_elements(const char *p, Py_ssize_t n, Py_ssize_t pos, Py_ssize_t nl, Py_ssize_t *out) {
    Py_ssize_t v;
    int r = parse_len(p, n, pos + 1, nl, pos, &v);
    if (r < 0) return -1;
    unsigned char t = (unsigned char)p[pos];
    if (t == '%') v = v > HUGE_LEN / 2 ? HUGE_LEN : (v < -HUGE_LEN / 2 ? -HUGE_LEN : 2 * v);
    else if (t == '|') v = v >= 0 ? (v > HUGE_LEN / 2 ? HUGE_LEN : 2 * v + 1) : 0;
    *out = v;
    return 0;
}

/* A small stack of open-aggregate counts (resumable scan state). */
typedef struct { Py_ssize_t *a; Py_ssize_t n, cap; } stack_t;

static int stack_push(stack_t *s, Py_ssize_t v) {
    if (s->n == s->cap) {
        Py_ssize_t cap = s->cap ? s->cap * 2 : 8;
        Py_ssize_t *a = PyMem_Realloc(s->a, (size_t)cap * sizeof(Py_ssize_t));
        if (a == NULL) { PyErr_NoMemory(); return -1; }
        s->a = a;
        s->cap = cap;
    }
    s->a[s->n++] = v;
    return 0;
}

/* Twin of _scan_replies: 0 ok (*end, *need set), -1 error. */
static int scan_replies(const char *p, Py_ssize_t size, Py_ssize_t pos, stack_t *outer,
                        Py_ssize_t *end_out, Py_ssize_t *need_out) {
    while (1) {
        Py_ssize_t nl = find_crlf(p, pos, size);
        if (nl < 0) { *end_out = pos; *need_out = size + 1; return 0; }
        unsigned char t = (unsigned char)p[pos];
        if (is_blob_type(t)) {
            Py_ssize_t v;
            if (parse_len(p, size, pos + 1, nl, pos, &v) < 0) return -1;
            if (v >= 0) {
                Py_ssize_t end = nl + v + 4;
                if (end > size) { *end_out = pos; *need_out = end; return 0; }
                pos = end;
            } else {
                pos = nl + 2;
            }
        } else if (is_line_type(t)) {
            pos = nl + 2;
        } else if (is_agg_type(t)) {
            Py_ssize_t v;
            if (agg_elements(p, size, pos, nl, &v) < 0) return -1;
            pos = nl + 2;
            if (v > 0) {
                if (stack_push(outer, v) < 0) return -1;
                continue;
            }
        } else {
            bad_reply(p, size, pos);
            return -1;
        }
        while (outer->n) {
            outer->a[outer->n - 1] -= 1;
            if (outer->a[outer->n - 1]) break;
            outer->n--;
        }
        if (!outer->n) { *end_out = pos; *need_out = 0; return 0; }
    }
}

/* Twin of frame_reply: offset past the reply at p[pos], -1 incomplete, -2 error. */
static Py_ssize_t frame_one(const char *p, Py_ssize_t n, Py_ssize_t pos, stack_t *tmp) {
    Py_ssize_t nl = find_crlf(p, pos, n);
    if (nl < 0) return -1;
    unsigned char t = (unsigned char)p[pos];
    if (t == '$') {
        Py_ssize_t v;
        if (parse_len(p, n, pos + 1, nl, pos, &v) < 0) return -2;
        if (v < 0) return nl + 2;
        Py_ssize_t end = nl + v + 4;
        return end <= n ? end : -1;
    }
    if (is_line_type(t)) return nl + 2;
    if (is_agg_type(t)) {
        Py_ssize_t v;
        if (agg_elements(p, n, pos, nl, &v) < 0) return -2;
        if (v <= 0) return nl + 2;
        tmp->n = 0;
        if (stack_push(tmp, v) < 0) return -2;
        Py_ssize_t end, need;
        if (scan_replies(p, n, nl + 2, tmp, &end, &need) < 0) return -2;
        return need ? -1 : end;
    }
    if (is_blob_type(t)) {
        Py_ssize_t v;
        if (parse_len(p, n, pos + 1, nl, pos, &v) < 0) return -2;
        Py_ssize_t end = v >= 0 ? nl + v + 4 : nl + 2;
        return end <= n ? end : -1;
    }
    bad_reply(p, n, pos);
    return -2;
}

static int rr_init(ReplyReader *self, PyObject *args, PyObject *kw) {
    if (!PyArg_ParseTuple(args, ":ReplyReader")) return -1;
    PyMem_Free(self->buf);
    self->buf = NULL;
    self->len = self->cap = 0;
    self->need = self->scan = 0;
    self->nouter = 0;
    self->errors = 0;
    return 0;
}

static void rr_dealloc(ReplyReader *self) {
    PyMem_Free(self->buf);
    PyMem_Free(self->outer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *rr_reset(ReplyReader *self, PyObject *unused) {
    PyMem_Free(self->buf);
    self->buf = NULL;
    self->len = self->cap = 0;
    self->need = self->scan = 0;
    self->nouter = 0;
    Py_RETURN_NONE;
}

static int rr_append(ReplyReader *self, const char *p, Py_ssize_t n) {
    Py_ssize_t want = self->len + n;
    if (want > self->cap) {
        Py_ssize_t cap = self->cap * 2;
        if (cap < want) cap = want;
        /* Grow only to what the reply is known to need, when that is known. */
        if (self->need > want && cap > self->need) cap = self->need;
        char *b = PyMem_Realloc(self->buf, (size_t)cap);
        if (b == NULL) { PyErr_NoMemory(); return -1; }
        self->buf = b;
        self->cap = cap;
    }
    memcpy(self->buf + self->len, p, (size_t)n);
    self->len = want;
    return 0;
}

static PyObject *rr_feed(ReplyReader *self, PyObject *data) {
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "ReplyReader.feed() takes bytes");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    const char *p = PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    Py_ssize_t pos = 0;
    stack_t st = {self->outer, self->nouter, self->capouter};
    if (self->len) {
        Py_ssize_t had = self->len;
        if (rr_append(self, p, n) < 0) goto error;
        if (self->len < self->need) goto done;
        Py_ssize_t end, need;
        if (scan_replies(self->buf, self->len, self->scan, &st, &end, &need) < 0) goto error;
        if (need) {
            self->scan = end;
            self->need = need;
            goto done;
        }
        PyObject *r = PyBytes_FromStringAndSize(self->buf, end);
        if (r == NULL || PyList_Append(out, r) < 0) { Py_XDECREF(r); goto error; }
        Py_DECREF(r);
        if (self->buf[0] == '-') self->errors++;
        pos = end - had;
        PyMem_Free(self->buf);
        self->buf = NULL;
        self->len = self->cap = 0;
        self->need = self->scan = 0;
        st.n = 0;
    }
    while (pos < n) {
        unsigned char t = (unsigned char)p[pos];
        Py_ssize_t end;
        /* The common reply types framed inline: this loop runs once per reply. */
        if (t == '$') {
            Py_ssize_t nl = find_crlf(p, pos, n);
            if (nl < 0) {
                end = -1;
            } else {
                Py_ssize_t v;
                if (parse_len(p, n, pos + 1, nl, pos, &v) < 0) goto error;
                end = v >= 0 ? nl + 4 + v : nl + 2;
                if (end > n) end = -1;
            }
        } else if (t == '+' || t == ':' || t == '-') {
            Py_ssize_t nl = find_crlf(p, pos, n);
            end = nl >= 0 ? nl + 2 : -1;
            if (t == '-' && end > 0) self->errors++;
        } else {
            end = frame_one(p, n, pos, &st);
            if (end == -2) goto error;
        }
        if (end < 0) {
            /* Start an incremental scan of this reply (a little work is redone, once). */
            self->len = 0;
            self->need = 0;
            self->scan = 0;
            st.n = 0;
            if (rr_append(self, p + pos, n - pos) < 0) goto error;
            break;
        }
        PyObject *r;
        if (pos == 0 && end == n) {
            r = data;
            Py_INCREF(r);
        } else {
            r = PyBytes_FromStringAndSize(p + pos, end - pos);
            if (r == NULL) goto error;
        }
        if (PyList_Append(out, r) < 0) { Py_DECREF(r); goto error; }
        Py_DECREF(r);
        pos = end;
    }
done:
    self->outer = st.a;
    self->nouter = st.n;
    self->capouter = st.cap;
    return out;
error:
    self->outer = st.a;
    self->nouter = st.n;
    self->capouter = st.cap;
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef rr_methods[] = {
    {"feed", (PyCFunction)rr_feed, METH_O, "Complete raw replies in data (after any held bytes)."},
    {"reset", (PyCFunction)rr_reset, METH_NOARGS, "Forget any partial reply."},
    {NULL}
};

static PyMemberDef rr_members[] = {
    {"errors", T_PYSSIZET, offsetof(ReplyReader, errors), 0, "error replies seen"},
    {NULL}
};

static PyTypeObject ReplyReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._accel._speedups.ReplyReader",
    .tp_basicsize = sizeof(ReplyReader),
    .tp_dealloc = (destructor)rr_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Splits a reply stream into complete raw replies (twin of slotcore ReplyReader).",
    .tp_methods = rr_methods,
    .tp_members = rr_members,
    .tp_init = (initproc)rr_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------------------------
 * ReplySlot (twin: proxy.client.reply.ReplySlot) and the backend delivery loop
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *data;  /* the reply once resolved, else None */
    PyObject *sink;  /* the client connection */
} ReplySlot;

static PyTypeObject ReplySlotType;

static int rs_init(ReplySlot *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"sink", "data", NULL};
    PyObject *sink, *data = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O", kwlist, &sink, &data)) return -1;
    Py_INCREF(sink);
    Py_XSETREF(self->sink, sink);
    Py_INCREF(data);
    Py_XSETREF(self->data, data);
    return 0;
}

static int rs_traverse(ReplySlot *self, visitproc visit, void *arg) {
    Py_VISIT(self->sink);
    Py_VISIT(self->data);
    return 0;
}

static int rs_clear(ReplySlot *self) {
    Py_CLEAR(self->sink);
    Py_CLEAR(self->data);
    return 0;
}

static void rs_dealloc(ReplySlot *self) {
    PyObject_GC_UnTrack(self);
    rs_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A new ReplySlot for `sink` (data None), without going through tp_init. */
static PyObject *rs_new(PyObject *sink) {
    ReplySlot *s = PyObject_GC_New(ReplySlot, &ReplySlotType);
    if (s == NULL) return NULL;
    Py_INCREF(sink);
    s->sink = sink;
    Py_INCREF(Py_None);
    s->data = Py_None;
    PyObject_GC_Track(s);
    return (PyObject *)s;
}

static inline PyObject *slot_data(PyObject *o) {
    /* new reference */
    if (PyObject_TypeCheck(o, &ReplySlotType)) {
        PyObject *d = ((ReplySlot *)o)->data;
        if (d == NULL) d = Py_None;
        Py_INCREF(d);
        return d;
    }
    return aget(o, s_data);
}

/* The in-order release: 0, or -1 with an exception set. */
static int rs_resolve_impl(ReplySlot *self, PyObject *raw) {
    Py_INCREF(raw);
    Py_XSETREF(self->data, raw);
    PyObject *s = self->sink;
    if (s == NULL) return 0;
    Py_INCREF(s);
    int rc = -1;
    PyObject *fifo = aget(s, s_fifo), *out = NULL, *head = NULL;
    if (fifo == NULL) goto end;
    Py_ssize_t len = PyObject_Length(fifo);
    if (len < 0) goto end;
    if (len == 0) { rc = 0; goto end; }
    head = PySequence_GetItem(fifo, 0);
    if (head == NULL) goto end;
    if (head != (PyObject *)self) { rc = 0; goto end; }
    Py_CLEAR(head);
    /* Only the head can be written; a reply behind an unanswered one waits for it. */
    PyObject *x = fifo_popleft(fifo);
    if (x == NULL) goto end;
    Py_DECREF(x);
    out = aget(s, s_out);
    if (out == NULL) goto end;
    if (PyList_CheckExact(out) ? PyList_Append(out, raw) < 0
                               : (x = PyObject_CallMethodOneArg(out, s_append, raw)) == NULL)
        goto end;
    if (!PyList_CheckExact(out)) Py_DECREF(x);
    while (1) {
        len = PyObject_Length(fifo);
        if (len < 0) goto end;
        if (len == 0) break;
        head = PySequence_GetItem(fifo, 0);
        if (head == NULL) goto end;
        PyObject *d = slot_data(head);
        Py_CLEAR(head);
        if (d == NULL) goto end;
        if (d == Py_None) { Py_DECREF(d); break; }
        x = fifo_popleft(fifo);
        if (x == NULL) { Py_DECREF(d); goto end; }
        Py_DECREF(x);
        int r = PyList_CheckExact(out) ? PyList_Append(out, d) : -1;
        if (!PyList_CheckExact(out)) {
            x = PyObject_CallMethodOneArg(out, s_append, d);
            r = x == NULL ? -1 : 0;
            Py_XDECREF(x);
        }
        Py_DECREF(d);
        if (r < 0) goto end;
    }
    PyObject *dirty = aget(s, s_dirty);
    if (dirty == NULL) goto end;
    int isdirty = PyObject_IsTrue(dirty);
    Py_DECREF(dirty);
    if (isdirty < 0) goto end;
    if (!isdirty) {
        if (aset(s, s_dirty, Py_True) < 0) goto end;
        PyObject *fl = aget(s, s_flusher);
        if (fl == NULL) goto end;
        x = PyObject_CallMethodOneArg(fl, s_mark, s);
        Py_DECREF(fl);
        if (x == NULL) goto end;
        Py_DECREF(x);
    }
    PyObject *pp = aget(s, s_pipeline_paused);
    if (pp == NULL) goto end;
    int paused = PyObject_IsTrue(pp);
    Py_DECREF(pp);
    if (paused < 0) goto end;
    if (paused) {
        x = PyObject_CallMethodNoArgs(s, s_pipeline_progress);
        if (x == NULL) goto end;
        Py_DECREF(x);
    }
    rc = 0;
end:
    Py_XDECREF(head);
    Py_XDECREF(out);
    Py_XDECREF(fifo);
    Py_DECREF(s);
    return rc;
}

static PyObject *rs_resolve(ReplySlot *self, PyObject *raw) {
    if (rs_resolve_impl(self, raw) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef rs_methods[] = {
    {"resolve", (PyCFunction)rs_resolve, METH_O,
     "Called by whoever has the answer (backend reader, merge, local handler)."},
    {NULL}
};

static PyMemberDef rs_members[] = {
    {"data", T_OBJECT, offsetof(ReplySlot, data), 0, NULL},
    {"sink", T_OBJECT, offsetof(ReplySlot, sink), 0, NULL},
    {NULL}
};

static PyTypeObject ReplySlotType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._accel._speedups.ReplySlot",
    .tp_basicsize = sizeof(ReplySlot),
    .tp_dealloc = (destructor)rs_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One client request's place in the reply order (compiled twin).",
    .tp_traverse = (traverseproc)rs_traverse,
    .tp_clear = (inquiry)rs_clear,
    .tp_methods = rs_methods,
    .tp_members = rs_members,
    .tp_init = (initproc)rs_init,
    .tp_new = PyType_GenericNew,
};


/* ------------------------------------------------------------------------------------------
 * TimedSlot (twin: proxy.client.timed.TimedSlot + proxy.observe.meter.record): the latency
 * sampler's reply slot (1 request in Meter.every). The clock (CLOCK_MONOTONIC, the clock of
 * time.perf_counter_ns) is read when it is made and when its reply is queued; the latency
 * goes into its command's and its group's Timings (count, failed, sum_ns, buckets[k]) here;
 * only a request over the slow log's threshold calls Python (meter.slow_entry). In Python
 * this was ~12k instructions per timed request (a frame for __init__, resolve and record,
 * each with its attribute traffic): most of what metrics cost the compiled fast path.
 * ------------------------------------------------------------------------------------------ */
#include <time.h>


typedef struct {
    ReplySlot base;
    PyObject *argv, *meter, *timings, *group;  /* group: Timings or None */
    long long t0;
} TimedSlot;

static PyTypeObject TimedSlotType;
static PyObject *s_count, *s_failed, *s_sum_ns, *s_buckets, *s_slowlog, *s_slower_than,
    *s_slow_entry;
static long long hist_first = 4, hist_last = 21;  /* histogram.FIRST_POW, NBUCKETS - 1 */

static inline long long mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int ts_init(TimedSlot *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"sink", "argv", "meter", "timings", "group", NULL};
    PyObject *sink, *argv, *meter, *timings, *group;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOO", kwlist, &sink, &argv, &meter,
                                     &timings, &group))
        return -1;
    Py_XSETREF(self->base.sink, Py_NewRef(sink));
    Py_XSETREF(self->base.data, Py_NewRef(Py_None));
    Py_XSETREF(self->argv, Py_NewRef(argv));
    Py_XSETREF(self->meter, Py_NewRef(meter));
    Py_XSETREF(self->timings, Py_NewRef(timings));
    Py_XSETREF(self->group, Py_NewRef(group));
    self->t0 = mono_ns();
    return 0;
}

static int ts_traverse(TimedSlot *self, visitproc visit, void *arg) {
    Py_VISIT(self->argv);
    Py_VISIT(self->meter);
    Py_VISIT(self->timings);
    Py_VISIT(self->group);
    return rs_traverse(&self->base, visit, arg);
}

static int ts_clear(TimedSlot *self) {
    Py_CLEAR(self->argv);
    Py_CLEAR(self->meter);
    Py_CLEAR(self->timings);
    Py_CLEAR(self->group);
    return rs_clear(&self->base);
}

static void ts_dealloc(TimedSlot *self) {
    PyObject_GC_UnTrack(self);
    ts_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* obj.name += n (a Timings int field) */
static int timings_add(PyObject *t, long long dt, Py_ssize_t k, int failed) {
    if (add_ll(t, s_count, 1) < 0 || add_ll(t, s_sum_ns, dt) < 0) return -1;
    if (failed && add_ll(t, s_failed, 1) < 0) return -1;
    PyObject *b = aget(t, s_buckets);
    if (b == NULL) return -1;
    int rc = -1;
    if (!PyList_CheckExact(b) || k >= PyList_GET_SIZE(b)) {
        PyErr_SetString(PyExc_TypeError, "Timings.buckets: a list of NBUCKETS ints");
    } else {
        PyObject *old = PyList_GET_ITEM(b, k);
        long long v = PyLong_AsLongLong(old);
        if (!(v == -1 && PyErr_Occurred())) {
            PyObject *nv = PyLong_FromLongLong(v + 1);
            if (nv != NULL) {
                PyList_SET_ITEM(b, k, nv);
                Py_DECREF(old);
                rc = 0;
            }
        }
    }
    Py_DECREF(b);
    return rc;
}

/* record(): what proxy.observe.meter.record does, `now` the clock at the reply. */
static int ts_record(TimedSlot *self, PyObject *raw, long long now) {
    long long dt = now - self->t0;
    long long usec = dt / 1000;
    Py_ssize_t k = 0;
    if (usec > 1) {
        k = (Py_ssize_t)(64 - __builtin_clzll((unsigned long long)(usec - 1)) - hist_first);
        if (k < 0) k = 0;
        else if (k > hist_last) k = hist_last;
    }
    int failed = PyBytes_Check(raw) && PyBytes_GET_SIZE(raw) > 0
                 && (PyBytes_AS_STRING(raw)[0] == '-' || PyBytes_AS_STRING(raw)[0] == '!');
    if (timings_add(self->timings, dt, k, failed) < 0) return -1;
    if (self->group != Py_None && timings_add(self->group, dt, k, failed) < 0) return -1;
    /* The slow log's threshold: 0 <= slower_than <= usec (a negative one: off) */
    PyObject *slow = aget(self->meter, s_slowlog);
    if (slow == NULL) return -1;
    long long thr;
    int r = get_ll(slow, s_slower_than, &thr);
    Py_DECREF(slow);
    if (r < 0) return -1;
    if (thr >= 0 && thr <= usec) {
        PyObject *client = self->base.sink != NULL
            ? PyObject_GetAttr(self->base.sink, s_state) : Py_NewRef(Py_None);
        if (client == NULL) return -1;
        PyObject *u = PyLong_FromLongLong(usec);
        PyObject *x = u == NULL ? NULL : PyObject_CallMethodObjArgs(
            self->meter, s_slow_entry, self->argv, u, client, self->group, NULL);
        Py_XDECREF(u);
        Py_DECREF(client);
        if (x == NULL) return -1;
        Py_DECREF(x);
    }
    return 0;
}

static PyObject *ts_resolve(TimedSlot *self, PyObject *raw) {
    if (ts_record(self, raw, mono_ns()) < 0) return NULL;
    if (rs_resolve_impl(&self->base, raw) < 0) return NULL;
    Py_RETURN_NONE;
}

/* record_at(raw, now_ns): record as resolve does, at a given clock (tests), no release. */
static PyObject *ts_record_at(TimedSlot *self, PyObject *const *args, Py_ssize_t nargs) {
    long long now;
    if (nargs != 2 || (now = PyLong_AsLongLong(args[1])) == -1) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "record_at(raw, now_ns)");
        return NULL;
    }
    if (ts_record(self, args[0], now) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef ts_methods[] = {
    {"resolve", (PyCFunction)ts_resolve, METH_O, "Record the latency, then release as ReplySlot."},
    {"record_at", (PyCFunction)(void (*)(void))ts_record_at, METH_FASTCALL,
     "record_at(raw, now_ns): the recording alone, at a given clock (tests)."},
    {NULL}
};

static PyMemberDef ts_members[] = {
    {"argv", T_OBJECT, offsetof(TimedSlot, argv), READONLY, NULL},
    {"meter", T_OBJECT, offsetof(TimedSlot, meter), READONLY, NULL},
    {"timings", T_OBJECT, offsetof(TimedSlot, timings), READONLY, NULL},
    {"group", T_OBJECT, offsetof(TimedSlot, group), READONLY, NULL},
    {"t0", T_LONGLONG, offsetof(TimedSlot, t0), 0, NULL},
    {NULL}
};

static PyTypeObject TimedSlotType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._accel._speedups.TimedSlot",
    .tp_basicsize = sizeof(TimedSlot),
    .tp_dealloc = (destructor)ts_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A ReplySlot that times its request (the compiled latency sample).",
    .tp_traverse = (traverseproc)ts_traverse,
    .tp_clear = (inquiry)ts_clear,
    .tp_methods = ts_methods,
    .tp_members = ts_members,
    .tp_init = (initproc)ts_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------------------------
 * Gather (twin: proxy.client.reply.Gather + fanout.merge's merge_ok / merge_sum / merge_mget)
 *
 * The sub-replies of a split MSET / DEL-like / MGET are merged here when they have the shape
 * a redis-server sends (+OK, :n, an array of the expected length); anything else (an error is
 * not "anything else": the first error part wins, as in Python) is merged by the Python merge
 * function through client.reply.merge_safely, so every odd case keeps the Python behaviour.
 * ---------------------------------------------------------------------------------------- */

enum { MERGE_OK = 0, MERGE_SUM = 1, MERGE_MGET = 2 };

typedef struct {
    PyObject_HEAD
    PyObject *slot;       /* the client's ReplySlot (or anything with resolve) */
    PyObject *parts;      /* list of n bytes */
    PyObject *positions;  /* MGET: list of lists of key indices per part; else None */
    PyObject *merge;      /* the Python merge function (fallback) */
    Py_ssize_t left, nkeys;
    int kind;
} Gather;

typedef struct {
    PyObject_HEAD
    Gather *gather;
    Py_ssize_t index;
} GatherPart;

static PyTypeObject GatherType, GatherPartType;
static PyObject *merge_safely;  /* proxy.client.reply.merge_safely, imported on first use */
static PyObject *merge_parts;   /* proxy.fanout.split.merge_parts, likewise */
static PyObject *OK_BYTES;

static int g_traverse(Gather *self, visitproc visit, void *arg) {
    Py_VISIT(self->slot);
    Py_VISIT(self->parts);
    Py_VISIT(self->positions);
    Py_VISIT(self->merge);
    return 0;
}

static int g_clear(Gather *self) {
    Py_CLEAR(self->slot);
    Py_CLEAR(self->parts);
    Py_CLEAR(self->positions);
    Py_CLEAR(self->merge);
    return 0;
}

static void g_dealloc(Gather *self) {
    PyObject_GC_UnTrack(self);
    g_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Gather *gather_new(PyObject *slot, Py_ssize_t n, int kind, PyObject *positions,
                          Py_ssize_t nkeys, PyObject *merge) {
    Gather *g = PyObject_GC_New(Gather, &GatherType);
    if (g == NULL) return NULL;
    g->parts = PyList_New(n);
    if (g->parts == NULL) {
        g->slot = g->positions = g->merge = NULL;
        Py_DECREF(g);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(Py_None);
        PyList_SET_ITEM(g->parts, i, Py_None);
    }
    Py_INCREF(slot);
    g->slot = slot;
    Py_INCREF(positions);
    g->positions = positions;
    Py_INCREF(merge);
    g->merge = merge;
    g->left = n;
    g->nkeys = nkeys;
    g->kind = kind;
    PyObject_GC_Track(g);
    return g;
}

static PyObject *g_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *slot, *positions, *merge;
    Py_ssize_t n, nkeys;
    int kind;
    if (!PyArg_ParseTuple(args, "OniOnO:Gather", &slot, &n, &kind, &positions, &nkeys, &merge))
        return NULL;
    if (n < 1 || kind < MERGE_OK || kind > MERGE_MGET
        || (kind == MERGE_MGET && (!PyList_Check(positions) || PyList_GET_SIZE(positions) != n))) {
        PyErr_SetString(PyExc_ValueError, "Gather(slot, n, kind, positions, nkeys, merge)");
        return NULL;
    }
    return (PyObject *)gather_new(slot, n, kind, positions, nkeys, merge);
}

static PyObject *part_new(Gather *g, Py_ssize_t index) {
    GatherPart *p = PyObject_GC_New(GatherPart, &GatherPartType);
    if (p == NULL) return NULL;
    Py_INCREF(g);
    p->gather = g;
    p->index = index;
    PyObject_GC_Track(p);
    return (PyObject *)p;
}

static PyObject *g_part(Gather *self, PyObject *arg) {
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0 || i >= PyList_GET_SIZE(self->parts)) {
        PyErr_SetString(PyExc_IndexError, "part index out of range");
        return NULL;
    }
    return part_new(self, i);
}

/* ":<int>\r\n" exactly (no sign but '-', digits only, small): 1 and *v, else 0. */
static int int_reply(PyObject *b, long long *v) {
    const char *p = PyBytes_AS_STRING(b);
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    if (n < 4 || p[0] != ':' || p[n - 2] != '\r' || p[n - 1] != '\n') return 0;
    Py_ssize_t i = 1, e = n - 2;
    int neg = 0;
    if (p[i] == '-') { neg = 1; i++; }
    if (i >= e || e - i > 15) return 0;
    long long x = 0;
    for (; i < e; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        x = x * 10 + (p[i] - '0');
    }
    *v = neg ? -x : x;
    return 1;
}

/* The merged reply (new ref), NULL with an error, or NULL without one: "ask Python". */
static PyObject *g_merge_fast(Gather *g) {
    PyObject *parts = g->parts;
    Py_ssize_t n = PyList_GET_SIZE(parts);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyList_GET_ITEM(parts, i);
        if (!PyBytes_CheckExact(p)) return NULL;
        if (PyBytes_GET_SIZE(p) >= 1 && PyBytes_AS_STRING(p)[0] == '-') {
            Py_INCREF(p);  /* the first error part wins */
            return p;
        }
    }
    if (g->kind == MERGE_OK) {
        Py_INCREF(OK_BYTES);
        return OK_BYTES;
    }
    if (g->kind == MERGE_SUM) {
        long long sum = 0, v;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!int_reply(PyList_GET_ITEM(parts, i), &v)) return NULL;
            sum += v;
        }
        return PyBytes_FromFormat(":%zd\r\n", (Py_ssize_t)sum);
    }
    /* MGET: every part an array of exactly its keys' count; elements back in key order. */
    Py_ssize_t nkeys = g->nkeys;
    Py_ssize_t size = 1 + ndigits(nkeys) + 2;
    const char **start = PyMem_Malloc((size_t)(nkeys ? nkeys : 1) * sizeof(char *));
    Py_ssize_t *len = PyMem_Malloc((size_t)(nkeys ? nkeys : 1) * sizeof(Py_ssize_t));
    stack_t st = {NULL, 0, 0};
    PyObject *res = NULL;
    if (start == NULL || len == NULL) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t k = 0; k < nkeys; k++) start[k] = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyList_GET_ITEM(parts, i);
        PyObject *idxs = PyList_GET_ITEM(g->positions, i);
        const char *b = PyBytes_AS_STRING(p);
        Py_ssize_t bn = PyBytes_GET_SIZE(p);
        if (!PyList_Check(idxs) || bn < 4 || b[0] != '*') goto done;
        Py_ssize_t nl = find_crlf(b, 0, bn);
        if (nl < 0) goto done;
        Py_ssize_t m = 0;
        for (Py_ssize_t j = 1; j < nl; j++) {
            if (b[j] < '0' || b[j] > '9' || j > 12) goto done;
            m = m * 10 + (b[j] - '0');
        }
        if (nl == 1 || m != PyList_GET_SIZE(idxs)) goto done;
        Py_ssize_t pos = nl + 2;
        for (Py_ssize_t q = 0; q < m; q++) {
            Py_ssize_t end = frame_one(b, bn, pos, &st);
            if (end == -2) { PyErr_Clear(); goto done; }
            if (end < 0) goto done;
            Py_ssize_t k = PyLong_AsSsize_t(PyList_GET_ITEM(idxs, q));
            if (k < 0 || k >= nkeys) { PyErr_Clear(); goto done; }
            start[k] = b + pos;
            len[k] = end - pos;
            pos = end;
        }
        if (pos != bn) goto done;
    }
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        if (start[k] == NULL) goto done;
        size += len[k];
    }
    res = PyBytes_FromStringAndSize(NULL, size);
    if (res == NULL) goto done;
    char *w = put_header(PyBytes_AS_STRING(res), '*', nkeys);
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        memcpy(w, start[k], (size_t)len[k]);
        w += len[k];
    }
done:
    PyMem_Free(start);
    PyMem_Free(len);
    PyMem_Free(st.a);
    return res;
}

static int gather_done(Gather *g, Py_ssize_t index, PyObject *raw) {
    Py_INCREF(raw);
    PyObject *old = PyList_GET_ITEM(g->parts, index);
    PyList_SET_ITEM(g->parts, index, raw);
    Py_DECREF(old);
    g->left -= 1;
    if (g->left != 0) return 0;
    PyObject *merged = g_merge_fast(g);
    if (merged == NULL) {
        if (PyErr_Occurred()) return -1;
        if (merge_safely == NULL) {
            PyObject *mod = PyImport_ImportModule("proxy.client.reply");
            if (mod == NULL) return -1;
            merge_safely = PyObject_GetAttrString(mod, "merge_safely");
            Py_DECREF(mod);
            if (merge_safely == NULL) return -1;
        }
        if (g->merge == Py_None) {
            /* Made by fast_split: the Python merge by kind (fanout.split.merge_parts). */
            if (merge_parts == NULL) {
                PyObject *mod = PyImport_ImportModule("proxy.fanout.split");
                if (mod == NULL) return -1;
                merge_parts = PyObject_GetAttrString(mod, "merge_parts");
                Py_DECREF(mod);
                if (merge_parts == NULL) return -1;
            }
            PyObject *kind = PyLong_FromLong(g->kind), *nk = PyLong_FromSsize_t(g->nkeys);
            merged = (kind && nk) ? PyObject_CallFunctionObjArgs(merge_parts, kind, g->positions,
                                                                 nk, g->parts, NULL) : NULL;
            Py_XDECREF(kind);
            Py_XDECREF(nk);
        } else {
            merged = PyObject_CallFunctionObjArgs(merge_safely, g->merge, g->parts, NULL);
        }
        if (merged == NULL) return -1;
    }
    int r;
    if (Py_IS_TYPE(g->slot, &ReplySlotType)) {
        r = rs_resolve_impl((ReplySlot *)g->slot, merged);
    } else {
        PyObject *x = PyObject_CallMethodOneArg(g->slot, s_resolve, merged);
        r = x == NULL ? -1 : 0;
        Py_XDECREF(x);
    }
    Py_DECREF(merged);
    return r;
}

static PyObject *g_done(Gather *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "done(index, raw)");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[0]);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0 || i >= PyList_GET_SIZE(self->parts)) {
        PyErr_SetString(PyExc_IndexError, "part index out of range");
        return NULL;
    }
    if (gather_done(self, i, args[1]) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef g_methods[] = {
    {"part", (PyCFunction)g_part, METH_O, "The waiter of sub-request `index`."},
    {"done", (PyCFunction)(void (*)(void))g_done, METH_FASTCALL, "done(index, raw)"},
    {NULL}
};

static PyMemberDef g_members[] = {
    {"slot", T_OBJECT, offsetof(Gather, slot), READONLY, NULL},
    {"parts", T_OBJECT, offsetof(Gather, parts), READONLY, NULL},
    {"left", T_PYSSIZET, offsetof(Gather, left), READONLY, NULL},
    {"merge", T_OBJECT, offsetof(Gather, merge), READONLY, NULL},
    {NULL}
};

static PyTypeObject GatherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._accel._speedups.Gather",
    .tp_basicsize = sizeof(Gather),
    .tp_dealloc = (destructor)g_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Gather(slot, n, kind, positions, nkeys, merge): sub-replies merged (twin).",
    .tp_traverse = (traverseproc)g_traverse,
    .tp_clear = (inquiry)g_clear,
    .tp_methods = g_methods,
    .tp_members = g_members,
    .tp_new = g_new,
};

static int gp_traverse(GatherPart *self, visitproc visit, void *arg) {
    Py_VISIT(self->gather);
    return 0;
}

static int gp_clear(GatherPart *self) {
    Py_CLEAR(self->gather);
    return 0;
}

static void gp_dealloc(GatherPart *self) {
    PyObject_GC_UnTrack(self);
    gp_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *gp_resolve(GatherPart *self, PyObject *raw) {
    if (self->gather == NULL) Py_RETURN_NONE;
    if (gather_done(self->gather, self->index, raw) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef gp_methods[] = {
    {"resolve", (PyCFunction)gp_resolve, METH_O, "The sub-request's reply."},
    {NULL}
};

static PyTypeObject GatherPartType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._accel._speedups.GatherPart",
    .tp_basicsize = sizeof(GatherPart),
    .tp_dealloc = (destructor)gp_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The waiter of one sub-request of a Gather.",
    .tp_traverse = (traverseproc)gp_traverse,
    .tp_clear = (inquiry)gp_clear,
    .tp_methods = gp_methods,
};

/* for raw in replies: fifo.popleft().resolve(raw); 0, or -1 with an exception set */
static int deliver_impl(PyObject *fifo, PyObject *replies) {
    Py_INCREF(replies);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(replies); i++) {
        PyObject *raw = PyList_GET_ITEM(replies, i);
        Py_INCREF(raw);
        PyObject *w = fifo_popleft(fifo);
        if (w == NULL) { Py_DECREF(raw); goto error; }
        int r;
        if (Py_IS_TYPE(w, &ReplySlotType)) {
            r = rs_resolve_impl((ReplySlot *)w, raw);
        } else if (Py_IS_TYPE(w, &GatherPartType)) {
            GatherPart *gp = (GatherPart *)w;
            r = gp->gather != NULL ? gather_done(gp->gather, gp->index, raw) : 0;
        } else {
            PyObject *x = PyObject_CallMethodOneArg(w, s_resolve, raw);
            r = x == NULL ? -1 : 0;
            Py_XDECREF(x);
        }
        Py_DECREF(w);
        Py_DECREF(raw);
        if (r < 0) goto error;
    }
    Py_DECREF(replies);
    return 0;
error:
    Py_DECREF(replies);
    return -1;
}

/* deliver(fifo, replies): for raw in replies: fifo.popleft().resolve(raw) */
static PyObject *py_deliver(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "deliver(fifo, replies: list)");
        return NULL;
    }
    if (deliver_impl(args[0], args[1]) < 0) return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------
 * The client fast path (twin: the inlined loop of ClientConnection._dispatch_chunk)
 * ---------------------------------------------------------------------------------------- */

static inline int slot_ops_incr(PyObject *slot_ops, Py_ssize_t slot) {
    if (!PyList_CheckExact(slot_ops) || slot >= PyList_GET_SIZE(slot_ops)) {
        PyObject *k = PyLong_FromSsize_t(slot);
        if (k == NULL) return -1;
        PyObject *v = PyObject_GetItem(slot_ops, k);
        if (v == NULL) { Py_DECREF(k); return -1; }
        PyObject *one = PyLong_FromLong(1);
        PyObject *nv = PyNumber_Add(v, one);
        Py_DECREF(one);
        Py_DECREF(v);
        if (nv == NULL) { Py_DECREF(k); return -1; }
        int r = PyObject_SetItem(slot_ops, k, nv);
        Py_DECREF(k);
        Py_DECREF(nv);
        return r;
    }
    PyObject *v = PyList_GET_ITEM(slot_ops, slot);
    PyObject *nv;
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        nv = (!overflow && x < LLONG_MAX) ? PyLong_FromLongLong(x + 1) : NULL;
        if (nv == NULL && !PyErr_Occurred()) {
            PyObject *one = PyLong_FromLong(1);
            nv = PyNumber_Add(v, one);
            Py_DECREF(one);
        }
    } else {
        PyObject *one = PyLong_FromLong(1);
        nv = PyNumber_Add(v, one);
        Py_DECREF(one);
    }
    if (nv == NULL) return -1;
    PyList_SET_ITEM(slot_ops, slot, nv);
    Py_DECREF(v);
    return 0;
}

/* mark(conn), or Flusher.mark without a bound method when `mark` is the C Flusher itself */
static PyObject *call_mark(PyObject *mark, PyObject *conn);

/* Queue packed request `pk` on group.lanes[lane] for `waiter`: what BackendConn.send does,
 * written out for a connection that is UP (its fifo, its output, mark it dirty once). */
static int route_req(PyObject *group, Py_ssize_t lane, PyObject *pk, PyObject *waiter,
                     PyObject *mark, PyObject *up) {
    PyObject *lanes = aget(group, s_lanes);
    if (lanes == NULL) return -1;
    PyObject *bconn = PySequence_GetItem(lanes, lane);
    Py_DECREF(lanes);
    if (bconn == NULL) return -1;
    int r = -1;
    PyObject *x;
    PyObject *st = aget(bconn, s_state);
    if (st == NULL) goto end;
    int isup = PyObject_RichCompareBool(st, up, Py_EQ);
    Py_DECREF(st);
    if (isup < 0) goto end;
    if (!isup) {
        PyObject *sargs[3] = {bconn, pk, waiter};
        x = PyObject_VectorcallMethod(s_send, sargs, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (x == NULL) goto end;
        Py_DECREF(x);
        r = 0;
        goto end;
    }
    PyObject *bf = aget(bconn, s_fifo);
    if (bf == NULL) goto end;
    int ea = fifo_append(bf, waiter);
    Py_DECREF(bf);
    if (ea < 0) goto end;
    PyObject *bout = aget(bconn, s_out);
    if (bout == NULL) goto end;
    if (PyList_CheckExact(bout)) {
        int e = PyList_Append(bout, pk);
        Py_DECREF(bout);
        if (e < 0) goto end;
    } else {
        x = PyObject_CallMethodOneArg(bout, s_append, pk);
        Py_DECREF(bout);
        if (x == NULL) goto end;
        Py_DECREF(x);
    }
    PyObject *d = aget(bconn, s_dirty);
    if (d == NULL) goto end;
    int isd = PyObject_IsTrue(d);
    Py_DECREF(d);
    if (isd < 0) goto end;
    if (!isd) {
        if (aset(bconn, s_dirty, Py_True) < 0) goto end;
        x = call_mark(mark, bconn);
        if (x == NULL) goto end;
        Py_DECREF(x);
    }
    r = 0;
end:
    Py_DECREF(bconn);
    return r;
}

/* A new ReplySlot for `conn` appended to its fifo `cfifo`. */
static PyObject *expect_slot(PyObject *conn, PyObject *cfifo) {
    PyObject *rs = rs_new(conn);
    if (rs == NULL) return NULL;
    if (fifo_append(cfifo, rs) < 0) { Py_DECREF(rs); return NULL; }
    return rs;
}

/* The metrics sampler's TimedSlot: timed(conn, argv, group) (client.connection._timed_slot;
 * group None: a split command, "*"), appended to the client's fifo. */
static PyObject *timed_slot(PyObject *timed, PyObject *conn, PyObject *argv, PyObject *group,
                            PyObject *cfifo) {
    PyObject *targs[3] = {conn, argv, group};
    PyObject *rs = PyObject_Vectorcall(timed, targs, 3, NULL);
    if (rs == NULL) return NULL;
    if (fifo_append(cfifo, rs) < 0) { Py_DECREF(rs); return NULL; }
    return rs;
}

static PyObject *build_frame(PyObject *argv, Py_ssize_t step, PyObject *ix);

/*
 * A SPLIT command (MSET, MGET, DEL, UNLINK, EXISTS, TOUCH) whose keys all have an owner:
 * served as fanout.split.split does (one request unchanged when every key is on one group,
 * else one sub-request per group and a Gather). 1 served, 0 not (no side effect: the Python
 * path serves it), -1 error.
 */
static int fast_split(PyObject *conn, PyObject *argv, PyObject *pk, long kind,
                      PyObject *by_slot, long mask, PyObject *slot_ops, Py_ssize_t lane,
                      PyObject *mark, PyObject *up, PyObject *cfifo, PyObject *timed) {
    Py_ssize_t argc = PyList_GET_SIZE(argv);
    Py_ssize_t step = kind == MERGE_OK ? 2 : 1;
    if (kind == MERGE_OK && argc % 2 == 0) return 0;  /* wrong args: the Python path says so */
    Py_ssize_t nkeys = (argc - 1) / step;
    if (nkeys < 1) return 0;
    Py_ssize_t nslots = PyList_GET_SIZE(by_slot);
    Py_ssize_t small[64];
    Py_ssize_t *slots = nkeys <= 64 ? small : PyMem_Malloc((size_t)nkeys * sizeof(Py_ssize_t));
    if (slots == NULL) { PyErr_NoMemory(); return -1; }
    int rc = 0;
    PyObject *dests = NULL, *idxs = NULL, *rs = NULL;
    Gather *g = NULL;
    for (Py_ssize_t j = 0; j < nkeys; j++) {
        PyObject *key = PyList_GET_ITEM(argv, 1 + j * step);
        if (!PyBytes_Check(key)) goto done;
        Py_ssize_t slot = (Py_ssize_t)(key_hash((const unsigned char *)PyBytes_AS_STRING(key),
                                                PyBytes_GET_SIZE(key)) & (unsigned long)mask);
        if (slot >= nslots || PyList_GET_ITEM(by_slot, slot) == Py_None) goto done;
        slots[j] = slot;
    }
    dests = PyList_New(0);
    idxs = PyList_New(0);
    if (dests == NULL || idxs == NULL) { rc = -1; goto done; }
    for (Py_ssize_t j = 0; j < nkeys; j++) {
        if (slot_ops_incr(slot_ops, slots[j]) < 0) { rc = -1; goto done; }
        PyObject *grp = PyList_GET_ITEM(by_slot, slots[j]);
        Py_ssize_t nd = PyList_GET_SIZE(dests), k;
        for (k = 0; k < nd; k++)
            if (PyList_GET_ITEM(dests, k) == grp) break;
        PyObject *jj = PyLong_FromSsize_t(j);
        if (jj == NULL) { rc = -1; goto done; }
        if (k == nd) {
            PyObject *l = PyList_New(1);
            if (l == NULL || PyList_Append(dests, grp) < 0 || PyList_Append(idxs, l) < 0) {
                Py_XDECREF(l);
                Py_DECREF(jj);
                rc = -1;
                goto done;
            }
            PyList_SET_ITEM(l, 0, jj);
            Py_DECREF(l);
        } else {
            int e = PyList_Append(PyList_GET_ITEM(idxs, k), jj);
            Py_DECREF(jj);
            if (e < 0) { rc = -1; goto done; }
        }
    }
    /* a timed request's argv is kept (slow log, latency by command): real bytes */
    if (timed != NULL && materialize_argv(argv) < 0) { rc = -1; goto done; }
    rs = timed != NULL ? timed_slot(timed, conn, argv, Py_None, cfifo) : expect_slot(conn, cfifo);
    if (rs == NULL) { rc = -1; goto done; }
    Py_ssize_t nd = PyList_GET_SIZE(dests);
    if (nd == 1) {
        /* Every key on one group: the request goes unchanged, its reply needs no merge. */
        rc = route_req(PyList_GET_ITEM(dests, 0), lane, pk, rs, mark, up) < 0 ? -1 : 1;
        goto done;
    }
    g = gather_new(rs, nd, (int)kind, kind == MERGE_MGET ? idxs : Py_None, nkeys, Py_None);
    if (g == NULL) { rc = -1; goto done; }
    for (Py_ssize_t k = 0; k < nd; k++) {
        PyObject *frame = build_frame(argv, step, PyList_GET_ITEM(idxs, k));
        if (frame == NULL) { rc = -1; goto done; }
        PyObject *part = part_new(g, k);
        if (part == NULL) { Py_DECREF(frame); rc = -1; goto done; }
        int e = route_req(PyList_GET_ITEM(dests, k), lane, frame, part, mark, up);
        Py_DECREF(frame);
        Py_DECREF(part);
        if (e < 0) { rc = -1; goto done; }
    }
    rc = 1;
done:
    if (slots != small) PyMem_Free(slots);
    Py_XDECREF(dests);
    Py_XDECREF(idxs);
    Py_XDECREF(rs);
    Py_XDECREF((PyObject *)g);
    return rc;
}

/*
 * fast_run(conn, reqs, packed, i, fast_arity, by_slot, mask, slot_ops, lane, mark, up, hot,
 *          split_kinds, meter, timed) -> index of the first request from i on that the fast
 *          path does not serve.
 *
 * A single-key request is served here iff fast_arity has its argv[0], its argc fits that
 * arity and its slot has an owner (by_slot[slot] is not None). Served means exactly what the
 * Python loop does: slot_ops[slot] += 1, the hot-key countdown (hot.countdown; at 0
 * hot.countdown = hot.sample(argv[1], slot)), a ReplySlot on the client's fifo and on the
 * owner's lane (with metrics on, timed not None: one in meter.every, counted by
 * meter.countdown, is timed(conn, argv, group), a TimedSlot), the packed request on that lane's
 * output (or lane.send() when the lane is not UP).
 * With split_kinds (argv[0] -> (merge kind, arity)), a SPLIT command whose keys all have an
 * owner is served as fanout.split.split serves it (see fast_split); like dispatch, it is timed
 * one in meter.every by meter.slow_countdown, and not offered to the hot-key sampler.
 * The countdowns live in C locals during the run and are written back before returning.
 */
static Py_ssize_t fast_run_impl(PyObject *conn, PyObject *reqs, PyObject *packed, Py_ssize_t i,
                                PyObject *fast, PyObject *by_slot, long mask,
                                PyObject *slot_ops, Py_ssize_t lane, PyObject *mark,
                                PyObject *up, PyObject *hot, PyObject *split, PyObject *meter,
                                PyObject *timed);

static PyObject *py_fast_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 15) {
        PyErr_SetString(PyExc_TypeError, "fast_run() takes 15 arguments");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[3]);
    long mask = PyLong_AsLong(args[6]);
    Py_ssize_t lane = PyLong_AsSsize_t(args[8]);
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t j = fast_run_impl(args[0], args[1], args[2], i, args[4], args[5], mask, args[7],
                                 lane, args[9], args[10], args[11], args[12], args[13], args[14]);
    return j < 0 ? NULL : PyLong_FromSsize_t(j);
}

/* fast_run's body: the index it stopped at, or -1 with an exception set. */
static Py_ssize_t fast_run_impl(PyObject *conn, PyObject *reqs, PyObject *packed, Py_ssize_t i,
                                PyObject *fast, PyObject *by_slot, long mask,
                                PyObject *slot_ops, Py_ssize_t lane, PyObject *mark,
                                PyObject *up, PyObject *hot, PyObject *split, PyObject *meter,
                                PyObject *timed) {
    if (!PyList_CheckExact(reqs) || !PyList_CheckExact(packed) || !PyDict_Check(fast)
        || !PyList_CheckExact(by_slot) || (split != Py_None && !PyDict_Check(split))) {
        PyErr_SetString(PyExc_TypeError,
                        "fast_run(): reqs, packed, by_slot lists; fast_arity, split_kinds dicts");
        return -1;
    }
    if (timed == Py_None) timed = NULL;
    /* meter.every and meter.slow_countdown are read only when needed (a countdown at 0, a
     * split command): most runs read and write two countdowns and nothing else. */
    long long tick, cd = 0, slow_cd = 0, every = 0;
    int have_slow = 0;
    if (get_ll(hot, s_countdown, &tick) < 0) return -1;
    if (timed != NULL && get_ll(meter, s_countdown, &cd) < 0) return -1;
    Py_ssize_t n = PyList_GET_SIZE(reqs);
    if (PyList_GET_SIZE(packed) < n) n = PyList_GET_SIZE(packed);
    PyObject *cfifo = NULL;
    int failed = 0;
    for (; i < n; i++) {
        PyObject *argv = PyList_GET_ITEM(reqs, i);
        if (!PyList_CheckExact(argv) || PyList_GET_SIZE(argv) < 2) break;
        if (cfifo == NULL && (cfifo = aget(conn, s_fifo)) == NULL) goto error;
        PyObject *ar = PyDict_GetItemWithError(fast, PyList_GET_ITEM(argv, 0));
        Py_ssize_t argc = PyList_GET_SIZE(argv);
        if (ar == NULL) {
            if (PyErr_Occurred()) goto error;
            if (split == Py_None) break;
            PyObject *sk = PyDict_GetItemWithError(split, PyList_GET_ITEM(argv, 0));
            if (sk == NULL) {
                if (PyErr_Occurred()) goto error;
                break;
            }
            if (!PyTuple_Check(sk) || PyTuple_GET_SIZE(sk) != 2) break;
            long kind = PyLong_AsLong(PyTuple_GET_ITEM(sk, 0));
            long sarity = PyLong_AsLong(PyTuple_GET_ITEM(sk, 1));
            if (PyErr_Occurred()) goto error;
            if (sarity > 0 ? argc != sarity : argc < -sarity) break;
            /* Meter.tick(), as dispatch would count it for this request */
            if (timed != NULL && !have_slow) {
                if (get_ll(meter, s_slow_countdown, &slow_cd) < 0) goto error;
                have_slow = 1;
            }
            if (timed != NULL && every == 0 && slow_cd <= 1
                && get_ll(meter, s_every, &every) < 0)
                goto error;
            int time_it = timed != NULL && slow_cd <= 1;
            int r = fast_split(conn, argv, PyList_GET_ITEM(packed, i), kind, by_slot, mask,
                               slot_ops, lane, mark, up, cfifo, time_it ? timed : NULL);
            if (r < 0) goto error;
            if (r == 0) break;
            if (timed != NULL && --slow_cd <= 0) slow_cd = every;
            continue;
        }
        long arity = PyLong_AsLong(ar);
        if (arity == -1 && PyErr_Occurred()) goto error;
        if (arity > 0 ? argc != arity : argc < -arity) break;
        PyObject *key = PyList_GET_ITEM(argv, 1);
        if (!PyBytes_Check(key)) break;
        Py_ssize_t slot = (Py_ssize_t)(key_hash((const unsigned char *)PyBytes_AS_STRING(key),
                                                PyBytes_GET_SIZE(key)) & (unsigned long)mask);
        if (slot >= PyList_GET_SIZE(by_slot)) break;
        PyObject *group = PyList_GET_ITEM(by_slot, slot);
        if (group == Py_None) break;  /* unowned or in transit: dispatch/router decide */
        Py_INCREF(group);
        if (slot_ops_incr(slot_ops, slot) < 0) { Py_DECREF(group); goto error; }
        if (--tick == 0) {  /* hot keys: 1 request in sample_rate offers its key */
            PyObject *sl = PyLong_FromSsize_t(slot);
            if (sl == NULL) { Py_DECREF(group); goto error; }
            PyObject *hargs[3] = {hot, key, sl};
            PyObject *nt = PyObject_VectorcallMethod(
                s_sample, hargs, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            Py_DECREF(sl);
            if (nt == NULL) { Py_DECREF(group); goto error; }
            tick = PyLong_AsLongLong(nt);
            Py_DECREF(nt);
            if (tick == -1 && PyErr_Occurred()) { Py_DECREF(group); goto error; }
        }
        PyObject *rs;
        if (timed != NULL && --cd == 0) {  /* metrics: 1 request in meter.every is timed */
            if (every == 0 && get_ll(meter, s_every, &every) < 0) {
                Py_DECREF(group);
                goto error;
            }
            cd = every;
            /* a timed request's argv is kept (slow log, latency by command): real bytes */
            if (materialize_argv(argv) < 0) { Py_DECREF(group); goto error; }
            rs = timed_slot(timed, conn, argv, group, cfifo);
        } else {
            rs = expect_slot(conn, cfifo);
        }
        if (rs == NULL) { Py_DECREF(group); goto error; }
        int r = route_req(group, lane, PyList_GET_ITEM(packed, i), rs, mark, up);
        Py_DECREF(rs);
        Py_DECREF(group);
        if (r < 0) goto error;
    }
    goto out;
error:
    failed = 1;
out:
    Py_XDECREF(cfifo);
    {
        /* the countdowns back where the Python side (dispatch, the next read) reads them */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        int w = set_ll(hot, s_countdown, tick);
        if (w == 0 && timed != NULL)
            w = set_ll(meter, s_countdown, cd) < 0
                || (have_slow && set_ll(meter, s_slow_countdown, slow_cd) < 0) ? -1 : 0;
        if (failed) {
            PyErr_Restore(et, ev, tb);
            return -1;
        }
        if (w < 0) return -1;
    }
    return i;
}


/* ------------------------------------------------------------------------------------------
 * CallCounts (twin: a dict[bytes, int]): Meter.raw_calls, the exact per-command call count
 * that every parsed request adds 1 to. As a dict that is a hash of a fresh bytes object, a
 * lookup, a compare and a new int per read (~600 instructions, a -P 1 request's 2.5%); here
 * it is an FNV-1a of the name (a few bytes), a probe of a C table and a 64-bit add. Names
 * longer than CC_NAME_MAX, or past CC_MAX_USED distinct ones (clients choose names), go to
 * an ordinary dict beside the table: bounded memory, exact counts. It is a mapping for the
 * Python side (get, [], []=, items, clear, len), so Meter uses it like the dict it replaces.
 * ------------------------------------------------------------------------------------------ */
#define CC_NAME_MAX 24
#define CC_CAP 1024         /* power of two */
#define CC_MAX_USED 512     /* load factor <= 1/2 */

typedef struct {
    uint32_t hash;
    uint8_t len;            /* 0: empty */
    char name[CC_NAME_MAX];
    long long count;
} cc_entry;

typedef struct {
    PyObject_HEAD
    cc_entry *tab;
    Py_ssize_t used;
    PyObject *overflow;     /* dict: long or surplus names */
} CallCounts;

static PyTypeObject CallCountsType;

static inline uint32_t cc_hash(const char *s, Py_ssize_t n) {
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 16777619u; }
    return h;
}

/* The entry of name (found, or the empty one it would go in); NULL when it cannot be in the
 * table (too long, or absent with the table full). */
static cc_entry *cc_slot(CallCounts *cc, const char *s, Py_ssize_t n, int insert) {
    if (n < 1 || n > CC_NAME_MAX) return NULL;
    uint32_t h = cc_hash(s, n);
    size_t i = h & (CC_CAP - 1);
    for (;;) {
        cc_entry *e = &cc->tab[i];
        if (e->len == 0) {
            if (!insert || cc->used >= CC_MAX_USED) return NULL;
            e->hash = h;
            e->len = (uint8_t)n;
            memcpy(e->name, s, (size_t)n);
            e->count = 0;
            cc->used++;
            return e;
        }
        if (e->hash == h && e->len == n && memcmp(e->name, s, (size_t)n) == 0) return e;
        i = (i + 1) & (CC_CAP - 1);
    }
}

static int count_add(PyObject *calls, PyObject *name, Py_ssize_t n);

/* calls[name] += n, name a bytes object */
static int cc_add(CallCounts *cc, PyObject *name, Py_ssize_t n) {
    if (PyBytes_CheckExact(name)) {
        cc_entry *e = cc_slot(cc, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), 1);
        if (e != NULL) { e->count += n; return 0; }
    }
    return count_add(cc->overflow, name, n);
}

static PyObject *cc_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    if (PyTuple_GET_SIZE(args) || (kw != NULL && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "CallCounts() takes no arguments");
        return NULL;
    }
    CallCounts *self = (CallCounts *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->tab = PyMem_Calloc(CC_CAP, sizeof(cc_entry));
    self->overflow = PyDict_New();
    if (self->tab == NULL || self->overflow == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void cc_dealloc(CallCounts *self) {
    PyMem_Free(self->tab);
    Py_XDECREF(self->overflow);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static cc_entry *cc_find(CallCounts *self, PyObject *key) {
    if (!PyBytes_CheckExact(key)) return NULL;
    return cc_slot(self, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), 0);
}

static PyObject *cc_get(CallCounts *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(name[, default])");
        return NULL;
    }
    cc_entry *e = cc_find(self, args[0]);
    if (e != NULL && e->len) return PyLong_FromLongLong(e->count);
    PyObject *v = PyDict_GetItemWithError(self->overflow, args[0]);
    if (v != NULL) return Py_NewRef(v);
    if (PyErr_Occurred()) return NULL;
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

static PyObject *cc_subscript(CallCounts *self, PyObject *key) {
    cc_entry *e = cc_find(self, key);
    if (e != NULL && e->len) return PyLong_FromLongLong(e->count);
    PyObject *v = PyDict_GetItemWithError(self->overflow, key);
    if (v != NULL) return Py_NewRef(v);
    if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, key);
    return NULL;
}

static int cc_ass_subscript(CallCounts *self, PyObject *key, PyObject *value) {
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "CallCounts: entries are not deleted (clear() all)");
        return -1;
    }
    if (!PyLong_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "CallCounts: a count is an int");
        return -1;
    }
    if (PyBytes_CheckExact(key) && PyDict_GetItemWithError(self->overflow, key) == NULL) {
        if (PyErr_Occurred()) return -1;
        cc_entry *e = cc_slot(self, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), 1);
        if (e != NULL) {
            long long v = PyLong_AsLongLong(value);
            if (v == -1 && PyErr_Occurred()) return -1;
            e->count = v;
            return 0;
        }
    }
    return PyDict_SetItem(self->overflow, key, value);
}

static Py_ssize_t cc_length(CallCounts *self) {
    return self->used + PyDict_GET_SIZE(self->overflow);
}

static PyObject *cc_items(CallCounts *self, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (size_t i = 0; i < CC_CAP; i++) {
        cc_entry *e = &self->tab[i];
        if (!e->len) continue;
        PyObject *t = Py_BuildValue("(y#L)", e->name, (Py_ssize_t)e->len, e->count);
        if (t == NULL || PyList_Append(out, t) < 0) { Py_XDECREF(t); Py_DECREF(out); return NULL; }
        Py_DECREF(t);
    }
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(self->overflow, &pos, &k, &v)) {
        PyObject *t = PyTuple_Pack(2, k, v);
        if (t == NULL || PyList_Append(out, t) < 0) { Py_XDECREF(t); Py_DECREF(out); return NULL; }
        Py_DECREF(t);
    }
    return out;
}

static PyObject *cc_clear(CallCounts *self, PyObject *unused) {
    memset(self->tab, 0, CC_CAP * sizeof(cc_entry));
    self->used = 0;
    PyDict_Clear(self->overflow);
    Py_RETURN_NONE;
}

static PyMethodDef cc_methods[] = {
    {"get", (PyCFunction)(void (*)(void))cc_get, METH_FASTCALL, "get(name[, default])"},
    {"items", (PyCFunction)cc_items, METH_NOARGS, "[(name, count), ...] (a list: a snapshot)"},
    {"clear", (PyCFunction)cc_clear, METH_NOARGS, "Forget every count."},
    {NULL, NULL, 0, NULL},
};

static PyMappingMethods cc_as_mapping = {
    (lenfunc)cc_length, (binaryfunc)cc_subscript, (objobjargproc)cc_ass_subscript,
};

static PyTypeObject CallCountsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._accel._speedups.CallCounts",
    .tp_basicsize = sizeof(CallCounts),
    .tp_dealloc = (destructor)cc_dealloc,
    .tp_as_mapping = &cc_as_mapping,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Per-name call counts (bytes -> int) in a C table: Meter.raw_calls.",
    .tp_methods = cc_methods,
    .tp_new = cc_new,
};

/* calls[name] += n */
static int count_add(PyObject *calls, PyObject *name, Py_ssize_t n) {
    PyObject *old = PyDict_GetItemWithError(calls, name);
    PyObject *nv;
    if (old == NULL) {
        if (PyErr_Occurred()) return -1;
        nv = PyLong_FromSsize_t(n);
    } else if (PyLong_CheckExact(old)) {
        long long v = PyLong_AsLongLong(old);
        if (v == -1 && PyErr_Occurred()) return -1;
        nv = PyLong_FromLongLong(v + n);
    } else {
        PyObject *add = PyLong_FromSsize_t(n);
        if (add == NULL) return -1;
        nv = PyNumber_Add(old, add);
        Py_DECREF(add);
    }
    if (nv == NULL) return -1;
    int r = PyDict_SetItem(calls, name, nv);
    Py_DECREF(nv);
    return r;
}

/*
 * count_calls(calls, reqs): calls[argv[0]] += 1 for each argv of reqs (the metrics hook's
 * exact per-command count, once per read; twin: collections' _count_elements over
 * map(itemgetter(0), reqs)). A run of requests with the same name (a pipeline of SETs) is one
 * dict update. The client connection's parser does it itself (RequestParser(calls=...)).
 */
static int count_names(PyObject *calls, PyObject *reqs) {
    int table = Py_IS_TYPE(calls, &CallCountsType);
    PyObject *run = NULL;  /* the name of the current run (borrowed from its request) */
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(reqs); i++) {
        PyObject *argv = PyList_GET_ITEM(reqs, i);
        if (!PyList_CheckExact(argv) || PyList_GET_SIZE(argv) < 1) {
            PyErr_SetString(PyExc_TypeError, "count_calls(): each request a non-empty list");
            return -1;
        }
        PyObject *name = PyList_GET_ITEM(argv, 0);
        if (run != NULL && PyBytes_CheckExact(name) && PyBytes_CheckExact(run)
            && PyBytes_GET_SIZE(name) == PyBytes_GET_SIZE(run)
            && memcmp(PyBytes_AS_STRING(name), PyBytes_AS_STRING(run),
                      (size_t)PyBytes_GET_SIZE(name)) == 0) {
            n++;
            continue;
        }
        if (run != NULL && (table ? cc_add((CallCounts *)calls, run, n)
                                  : count_add(calls, run, n)) < 0) return -1;
        run = name;
        n = 1;
    }
    if (run != NULL && (table ? cc_add((CallCounts *)calls, run, n)
                              : count_add(calls, run, n)) < 0) return -1;
    return 0;
}

static PyObject *py_count_calls(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !(PyDict_CheckExact(args[0]) || Py_IS_TYPE(args[0], &CallCountsType))
        || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "count_calls(calls: dict | CallCounts, reqs: list)");
        return NULL;
    }
    if (count_names(args[0], args[1]) < 0) return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------
 * Flusher (twin: proxy.backend.conn.Flusher): one write per dirty connection per iteration
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *loop;
    PyObject *dirty;     /* list of connections marked this iteration */
    PyObject *run;       /* the bound _run, made once: call_soon(run) */
    int scheduled;
} Flusher;

static PyObject *s_call_soon, *s_flush, *s__run;

static int fl_init(Flusher *self, PyObject *args, PyObject *kw) {
    PyObject *loop;
    if (!PyArg_ParseTuple(args, "O:Flusher", &loop)) return -1;
    Py_INCREF(loop);
    Py_XSETREF(self->loop, loop);
    Py_XSETREF(self->dirty, PyList_New(0));
    if (self->dirty == NULL) return -1;
    Py_XSETREF(self->run, PyObject_GetAttr((PyObject *)self, s__run));
    if (self->run == NULL) return -1;
    self->scheduled = 0;
    return 0;
}

static int fl_traverse(Flusher *self, visitproc visit, void *arg) {
    Py_VISIT(self->loop);
    Py_VISIT(self->dirty);
    Py_VISIT(self->run);
    return 0;
}

static int fl_clear(Flusher *self) {
    Py_CLEAR(self->loop);
    Py_CLEAR(self->dirty);
    Py_CLEAR(self->run);
    return 0;
}

static void fl_dealloc(Flusher *self) {
    PyObject_GC_UnTrack(self);
    fl_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *fl_mark(Flusher *self, PyObject *conn) {
    if (self->dirty == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Flusher not initialised");
        return NULL;
    }
    if (PyList_Append(self->dirty, conn) < 0) return NULL;
    if (!self->scheduled) {
        /* call_soon runs after all I/O callbacks of the current iteration (asyncio and
         * uvloop both), so every request/reply produced in it is in the buffers. */
        PyObject *h = PyObject_CallMethodOneArg(self->loop, s_call_soon, self->run);
        if (h == NULL) return NULL;
        Py_DECREF(h);
        self->scheduled = 1;
    }
    Py_RETURN_NONE;
}

static PyObject *fl_run(Flusher *self, PyObject *unused) {
    self->scheduled = 0;
    PyObject *dirty = self->dirty;
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL) return NULL;
    self->dirty = fresh;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(dirty); i++) {
        PyObject *c = PyList_GET_ITEM(dirty, i);
        Py_INCREF(c);
        PyObject *r = PyObject_CallMethodNoArgs(c, s_flush);
        Py_DECREF(c);
        if (r == NULL) { Py_DECREF(dirty); return NULL; }
        Py_DECREF(r);
    }
    Py_DECREF(dirty);
    Py_RETURN_NONE;
}

static PyMethodDef fl_methods[] = {
    {"mark", (PyCFunction)fl_mark, METH_O, "Flush conn once at the end of this loop iteration."},
    {"_run", (PyCFunction)fl_run, METH_NOARGS, "Write every marked connection (call_soon)."},
    {NULL}
};

static PyTypeObject FlusherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._accel._speedups.Flusher",
    .tp_basicsize = sizeof(Flusher),
    .tp_dealloc = (destructor)fl_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Coalesces writes of many connections into one each per loop iteration (twin).",
    .tp_traverse = (traverseproc)fl_traverse,
    .tp_clear = (inquiry)fl_clear,
    .tp_methods = fl_methods,
    .tp_init = (initproc)fl_init,
    .tp_new = PyType_GenericNew,
};

static PyObject *call_mark(PyObject *mark, PyObject *conn) {
    if (Py_IS_TYPE(mark, &FlusherType)) return fl_mark((Flusher *)mark, conn);
    return PyObject_CallOneArg(mark, conn);
}

/* ------------------------------------------------------------------------------------------
 * Counter bases (twins: the plain int fields they replace): ClientState's per-read counters
 * and ProxyStats' traffic counters as C fields. Python reads and writes them as ints (member
 * descriptors); the callbacks below add to them in place: an int attribute is a new int
 * object on every add (past 256), five of them per -P 1 request.
 * ---------------------------------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    long long activity;  /* reads seen: the idle sweep compares it between rounds */
    long long commands;  /* commands dispatched */
    double last_read;    /* loop time of the last read (CLIENT LIST's idle=) */
} ClientCounters;

static PyMemberDef ccn_members[] = {
    {"activity", T_LONGLONG, offsetof(ClientCounters, activity), 0, "reads seen"},
    {"commands", T_LONGLONG, offsetof(ClientCounters, commands), 0, "commands dispatched"},
    {"last_read", T_DOUBLE, offsetof(ClientCounters, last_read), 0, "loop time of the last read"},
    {NULL}
};

static PyTypeObject ClientCountersType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._accel._speedups.ClientCounters",
    .tp_basicsize = sizeof(ClientCounters),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "ClientState's per-read counters, as C fields (base class).",
    .tp_members = ccn_members,
    .tp_new = PyType_GenericNew,
};

typedef struct {
    PyObject_HEAD
    long long commands, bytes_in, bytes_out;
} TrafficCounters;

static PyMemberDef tc_members[] = {
    {"commands", T_LONGLONG, offsetof(TrafficCounters, commands), 0, "commands dispatched"},
    {"bytes_in", T_LONGLONG, offsetof(TrafficCounters, bytes_in), 0, "client bytes read"},
    {"bytes_out", T_LONGLONG, offsetof(TrafficCounters, bytes_out), 0, "client bytes written"},
    {NULL}
};

static PyTypeObject TrafficCountersType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy._accel._speedups.TrafficCounters",
    .tp_basicsize = sizeof(TrafficCounters),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "ProxyStats' traffic counters, as C fields (base class).",
    .tp_members = tc_members,
    .tp_new = PyType_GenericNew,
};

#define AS_CLIENT_COUNTERS(o) \
    (PyObject_TypeCheck((o), &ClientCountersType) ? (ClientCounters *)(o) : NULL)
#define AS_TRAFFIC(o) \
    (PyObject_TypeCheck((o), &TrafficCountersType) ? (TrafficCounters *)(o) : NULL)

/* ------------------------------------------------------------------------------------------
 * The client connection's read and write callbacks, and the backend connection's write
 * (twins: ClientConnection.data_received and .flush, BackendConn.flush).
 *
 * A -P 1 request ran three Python frames of glue around the compiled pieces: the read
 * callback (accounting, feed, the checks that pick the fast path), the loop that calls
 * fast_run, and the write (join, transport.write). Here they are method descriptors that
 * CompiledClientConnection (and CompiledBackendConn) put in place of those methods, so the
 * event loop calls C directly. They serve the common case only, and hand every other one, at
 * the point where it leaves the common case, to the Python methods the twins are made of
 * (_py_data_received, _serve, _dispatch_chunk_compiled, _after_read, _after_write): the
 * Python code stays the one definition of every rare case.
 * ---------------------------------------------------------------------------------------- */
static PyObject *s_activity, *s_last_read, *s__time, *s_stats, *s_bytes_in, *s_bytes_out,
    *s_closing, *s_stash, *s_parser, *s_backlog, *s_lane_barrier, *s_max_pipeline, *s_mode,
    *s_fast_path, *s_reply_ctl, *s_read_from, *s_services, *s_table, *s_fast_arity,
    *s_split_kinds, *s_router, *s_by_slot, *s_mask, *s_slot_ops, *s_hotkeys, *s_meter,
    *s_enabled, *s_lane, *s_cmd, *s_commands, *s_transport, *s_write, *s_write_paused, *s_eof,
    *s_feed, *s__serve, *s__dispatch_chunk_compiled, *s__after_read,
    *s__py_data_received, *s__after_write, *s__stash, *s_counters, *s_requests, *s_reader,
    *s_errors, *s__unparsable, *s__unrequested;
static PyObject *client_timed;  /* client.connection._timed_slot (set_client_hooks) */
static PyObject *client_up;     /* backend.conn.UP */

static PyObject *py_set_client_hooks(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_client_hooks(timed_slot, up)");
        return NULL;
    }
    Py_INCREF(args[0]);
    Py_XSETREF(client_timed, args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(client_up, args[1]);
    Py_RETURN_NONE;
}

/* o.name(args...) with the result dropped: 0, or -1 with an exception set */
static int call_void(PyObject *o, PyObject *name, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *a[4] = {o};
    for (Py_ssize_t k = 0; k < nargs && k < 3; k++) a[k + 1] = args[k];
    PyObject *r = PyObject_VectorcallMethod(name, a, (nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                            NULL);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* The fast path's context, read afresh on every read (the router's table, the samplers and
 * the metrics switch can all change between reads), then fast_run over the whole read. */
static Py_ssize_t cl_fast(PyObject *conn, PyObject *state, PyObject *stats, PyObject *reqs,
                          PyObject *packed) {
    Py_ssize_t j = -1;
    long long lane;
    PyObject *services = NULL, *table = NULL, *fast = NULL, *split = NULL, *router = NULL,
             *by_slot = NULL, *mask_o = NULL, *slot_ops = NULL, *hot = NULL, *meter = NULL,
             *flusher = NULL;
    if ((services = aget(conn, s_services)) == NULL || (table = aget(services, s_table)) == NULL
        || (fast = aget(table, s_fast_arity)) == NULL
        || (split = aget(table, s_split_kinds)) == NULL
        || (router = aget(services, s_router)) == NULL
        || (by_slot = aget(router, s_by_slot)) == NULL
        || (mask_o = aget(router, s_mask)) == NULL
        || (slot_ops = aget(stats, s_slot_ops)) == NULL
        || (hot = aget(services, s_hotkeys)) == NULL || (meter = aget(stats, s_meter)) == NULL
        || (flusher = aget(conn, s_flusher)) == NULL || get_ll(state, s_lane, &lane) < 0)
        goto end;
    long mask = PyLong_AsLong(mask_o);
    if (mask == -1 && PyErr_Occurred()) goto end;
    int on = attr_true(meter, s_enabled);
    if (on < 0) goto end;
    if (on && client_timed == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_client_hooks() was not called");
        goto end;
    }
    j = fast_run_impl(conn, reqs, packed, 0, fast, by_slot, mask, slot_ops, (Py_ssize_t)lane,
                      flusher, client_up != NULL ? client_up : Py_None, hot, split, meter,
                      on ? client_timed : NULL);
end:
    Py_XDECREF(services); Py_XDECREF(table); Py_XDECREF(fast); Py_XDECREF(split);
    Py_XDECREF(router); Py_XDECREF(by_slot); Py_XDECREF(mask_o); Py_XDECREF(slot_ops);
    Py_XDECREF(hot); Py_XDECREF(meter); Py_XDECREF(flusher);
    return j;
}

/* ClientConnection.data_received(data) */
static PyObject *cl_data_received(PyObject *conn, PyObject *data) {
    if (!PyBytes_CheckExact(data))
        return PyObject_CallMethodOneArg(conn, s__py_data_received, data);
    PyObject *state = NULL, *stats = NULL, *parser = NULL, *reqs = NULL, *fifo = NULL,
             *mode = NULL, *x;
    int rc = -1, t;
    long long maxp;
    if ((state = aget(conn, s_state)) == NULL) goto end;
    ClientCounters *cc = AS_CLIENT_COUNTERS(state);
    if (cc != NULL) cc->activity++;
    else if (add_ll(state, s_activity, 1) < 0) goto end;
    if ((x = aget(conn, s__time)) == NULL) goto end;
    PyObject *now = PyObject_CallNoArgs(x);
    Py_DECREF(x);
    if (now == NULL) goto end;
    if (cc != NULL && PyFloat_CheckExact(now)) {
        cc->last_read = PyFloat_AS_DOUBLE(now);
    } else if (aset(state, s_last_read, now) < 0) {
        Py_DECREF(now);
        goto end;
    }
    Py_DECREF(now);
    if ((stats = aget(conn, s_stats)) == NULL) goto end;
    TrafficCounters *tc = AS_TRAFFIC(stats);
    if (tc != NULL) tc->bytes_in += PyBytes_GET_SIZE(data);
    else if (add_ll(stats, s_bytes_in, PyBytes_GET_SIZE(data)) < 0) goto end;
    if ((t = attr_true(conn, s_closing)) != 0) { rc = t; goto end; }
    if ((x = aget(conn, s_stash)) == NULL) goto end;
    t = x != Py_None;
    Py_DECREF(x);
    if (t) { rc = call_void(conn, s__stash, &data, 1); goto end; }
    if ((parser = aget(conn, s_parser)) == NULL) goto end;
    int cparser = Py_IS_TYPE(parser, &RequestParserType);
    int refs = 0;
    if (cparser) {
        RequestParser *rp = (RequestParser *)parser;
        rp->lazy = 1;
        reqs = rp_feed(rp, data);
        rp->lazy = 0;
        refs = rp->has_refs;
    } else {
        reqs = PyObject_CallMethodOneArg(parser, s_feed, data);
    }
    if (reqs == NULL) goto end;
    /* the common case: a C parser's whole read, no error, nothing held back, within the
     * pipeline bound, in a mode that allows the fast path; anything else: _serve(reqs) */
    int common = cparser && PyList_CheckExact(reqs)
                 && ((RequestParser *)parser)->error == Py_None;
    Py_ssize_t n = common ? PyList_GET_SIZE(reqs) : 0;
    Py_ssize_t flen = 0;
    if (common && n) {
        if ((t = attr_true(conn, s_backlog)) < 0) goto end;
        common = !t;
    }
    if (common && n) {
        if ((t = attr_true(conn, s_lane_barrier)) < 0) goto end;
        common = !t;
    }
    if ((fifo = aget(conn, s_fifo)) == NULL || (flen = PyObject_Length(fifo)) < 0
        || get_ll(conn, s_max_pipeline, &maxp) < 0)
        goto end;
    if (common && n) common = n + flen <= maxp;
    if (common && n) {
        if ((mode = aget(conn, s_mode)) == NULL || (t = attr_true(mode, s_fast_path)) < 0)
            goto end;
        common = t;
    }
    if (common && n) {
        if ((t = attr_true(conn, s_reply_ctl)) < 0) goto end;
        common = !t;
    }
    if (common && n) {
        if ((t = attr_true(state, s_read_from)) < 0) goto end;
        common = !t;
    }
    if (!common) {
        if (refs && materialize(reqs, 0) < 0) goto end;
        rc = call_void(conn, s__serve, &reqs, 1);
        goto end;
    }
    if (n) {
        PyObject *packed = ((RequestParser *)parser)->packed;
        Py_INCREF(packed);
        Py_ssize_t j = cl_fast(conn, state, stats, reqs, packed);
        int e = j < 0;
        if (!e) {
            if (cc != NULL) cc->commands += j;
            else e = add_ll(state, s_commands, j) < 0;
        }
        if (!e) {
            if (tc != NULL) tc->commands += j;
            else e = add_ll(stats, s_commands, j) < 0;
        }
        if (e) {
            Py_DECREF(packed);
            goto end;
        }
        if (j < n) {  /* a request the fast path does not serve: the Python loop from there */
            if (refs && materialize(reqs, j) < 0) {
                Py_DECREF(packed);
                goto end;
            }
            PyObject *ja = PyLong_FromSsize_t(j);
            PyObject *a[3] = {reqs, packed, ja};
            int e = ja == NULL ? -1 : call_void(conn, s__dispatch_chunk_compiled, a, 3);
            Py_XDECREF(ja);
            Py_DECREF(packed);
            if (e < 0) goto end;
            rc = call_void(conn, s__after_read, NULL, 0);
            goto end;
        }
        Py_DECREF(packed);
        PyObject *last = PyList_GET_ITEM(reqs, n - 1);  /* served: a list of >= 2 */
        if (aset(state, s_cmd, PyList_GET_ITEM(last, 0)) < 0) goto end;
        if ((flen = PyObject_Length(fifo)) < 0) goto end;
    }
    /* backpressure (_after_read) only when it has something to do */
    if (flen >= maxp) {
        if ((t = attr_true(conn, s_pipeline_paused)) < 0) goto end;
        if (!t) { rc = call_void(conn, s__after_read, NULL, 0); goto end; }
    }
    if ((t = attr_true(conn, s_lane_barrier)) < 0) goto end;
    rc = t ? call_void(conn, s__after_read, NULL, 0) : 0;
end:
    Py_XDECREF(state); Py_XDECREF(stats); Py_XDECREF(parser); Py_XDECREF(reqs);
    Py_XDECREF(fifo); Py_XDECREF(mode);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

/* out (a list) joined into one bytes and emptied; a new reference, or NULL with an exception */
static PyObject *take_out(PyObject *out) {
    Py_ssize_t n = PyList_GET_SIZE(out);
    PyObject *data;
    if (n == 1) {
        data = Py_NewRef(PyList_GET_ITEM(out, 0));
    } else {
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        if (empty == NULL) return NULL;
        data = _PyBytes_Join(empty, out);
        Py_DECREF(empty);
        if (data == NULL) return NULL;
    }
    if (PyList_SetSlice(out, 0, n, NULL) < 0) { Py_DECREF(data); return NULL; }
    return data;
}

/* A flush's start, either connection's: dirty = False; its out (a list) and transport (new
 * references); 0, or -1 with an exception set. The caller's inline caches are passed in: the
 * client's and the backend's flush are different types at the same attributes. */
static inline int flush_begin(ic_t *ic_dirty, ic_t *ic_out, ic_t *ic_transport, PyObject *conn,
                              PyObject **out, PyObject **transport) {
    if (aset_ic(ic_dirty, conn, s_dirty, Py_False) < 0
        || (*out = aget_ic(ic_out, conn, s_out)) == NULL
        || (*transport = aget_ic(ic_transport, conn, s_transport)) == NULL)
        return -1;
    if (!PyList_CheckExact(*out)) {
        PyErr_SetString(PyExc_TypeError, "flush(): out must be a list");
        return -1;
    }
    return 0;
}

/* ClientConnection.flush(): one write for all ready replies */
static PyObject *cl_flush(PyObject *conn, PyObject *unused) {
    PyObject *out = NULL, *transport = NULL, *data = NULL, *stats = NULL;
    int rc = -1;
    if (flush_begin(IC(), IC(), IC(), conn, &out, &transport) < 0) goto end;
    if (transport == Py_None) {
        rc = PyList_SetSlice(out, 0, PyList_GET_SIZE(out), NULL);
        goto end;
    }
    int wrote = PyList_GET_SIZE(out) > 0;
    if (wrote) {
        if ((data = take_out(out)) == NULL) goto end;
        PyObject *r = PyObject_CallMethodOneArg(transport, s_write, data);
        if (r == NULL) goto end;
        Py_DECREF(r);
        if ((stats = aget(conn, s_stats)) == NULL) goto end;
        TrafficCounters *tc = AS_TRAFFIC(stats);
        if (tc != NULL) tc->bytes_out += PyBytes_GET_SIZE(data);
        else if (add_ll(stats, s_bytes_out, PyBytes_GET_SIZE(data)) < 0) goto end;
    }
    int t;
    if ((t = attr_true(conn, s_write_paused)) == 0 && (t = attr_true(conn, s_closing)) == 0)
        t = attr_true(conn, s_eof);
    if (t < 0) goto end;
    if (t) {
        PyObject *a[2] = {transport, wrote ? Py_True : Py_False};
        rc = call_void(conn, s__after_write, a, 2);
        goto end;
    }
    rc = 0;
end:
    Py_XDECREF(out); Py_XDECREF(transport); Py_XDECREF(data); Py_XDECREF(stats);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

/* BackendConn.flush(): one write for everything queued this iteration */
static PyObject *bk_flush(PyObject *conn, PyObject *unused) {
    PyObject *out = NULL, *transport = NULL, *data = NULL, *counters = NULL;
    int rc = -1;
    if (flush_begin(IC(), IC(), IC(), conn, &out, &transport) < 0) goto end;
    Py_ssize_t n = PyList_GET_SIZE(out);
    if (n == 0 || transport == Py_None) { rc = 0; goto end; }
    /* requests are counted here, once per write, not once per request */
    if ((counters = aget(conn, s_counters)) == NULL || add_ll(counters, s_requests, n) < 0
        || (data = take_out(out)) == NULL)
        goto end;
    PyObject *r = PyObject_CallMethodOneArg(transport, s_write, data);
    if (r == NULL) goto end;
    Py_DECREF(r);
    rc = 0;
end:
    Py_XDECREF(out); Py_XDECREF(transport); Py_XDECREF(data); Py_XDECREF(counters);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

/* BackendConn.data_received(data): the replies framed and handed to their waiters in order;
 * a stream gone wrong (unparsable, or a reply nobody asked for) goes to the Python methods
 * that say so and drop the connection. */
static PyObject *bk_data_received(PyObject *conn, PyObject *data) {
    PyObject *reader = NULL, *replies = NULL, *fifo = NULL, *counters = NULL;
    int rc = -1;
    if (!PyBytes_Check(data) || (reader = aget(conn, s_reader)) == NULL) goto slow;
    if (!Py_IS_TYPE(reader, &ReplyReaderType)) goto slow;
    replies = rr_feed((ReplyReader *)reader, data);
    if (replies == NULL) {
        if (!PyErr_ExceptionMatches(ProtocolError)) goto end;
        PyObject *t, *e, *tb;
        PyErr_Fetch(&t, &e, &tb);
        PyErr_NormalizeException(&t, &e, &tb);
        Py_XDECREF(t);
        Py_XDECREF(tb);
        if (e == NULL) goto end;
        rc = call_void(conn, s__unparsable, &e, 1);
        Py_DECREF(e);
        goto end;
    }
    ReplyReader *rr = (ReplyReader *)reader;
    if (rr->errors) {
        if ((counters = aget(conn, s_counters)) == NULL
            || add_ll(counters, s_errors, rr->errors) < 0)
            goto end;
        rr->errors = 0;
    }
    if ((fifo = aget(conn, s_fifo)) == NULL) goto end;
    Py_ssize_t nf = PyObject_Length(fifo);
    if (nf < 0) goto end;
    if (PyList_GET_SIZE(replies) > nf) { rc = call_void(conn, s__unrequested, NULL, 0); goto end; }
    rc = deliver_impl(fifo, replies);
    goto end;
slow:
    Py_CLEAR(reader);
    if (PyErr_Occurred()) goto end;
    PyObject *r = PyObject_CallMethodOneArg(conn, s__py_data_received, data);
    rc = r == NULL ? -1 : 0;
    Py_XDECREF(r);
end:
    Py_XDECREF(reader); Py_XDECREF(replies); Py_XDECREF(fifo); Py_XDECREF(counters);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef bk_data_received_def = {
    "data_received", (PyCFunction)bk_data_received, METH_O,
    "Called by the loop with reply bytes (compiled twin of BackendConn's)."};
static PyMethodDef cl_data_received_def = {
    "data_received", (PyCFunction)cl_data_received, METH_O,
    "Called by the loop with request bytes (compiled twin of ClientConnection's)."};
static PyMethodDef cl_flush_def = {
    "flush", (PyCFunction)cl_flush, METH_NOARGS,
    "Called by the Flusher: one write for all ready replies (compiled twin)."};
static PyMethodDef bk_flush_def = {
    "flush", (PyCFunction)bk_flush, METH_NOARGS,
    "Called by the Flusher: one write for everything queued (compiled twin of BackendConn's)."};

/* ------------------------------------------------------------------------------------------
 * MSET/MGET/DEL split (twin: proxy.fanout.split.plan_split)
 * ---------------------------------------------------------------------------------------- */

/* The packed sub-request argv[0] + the keys (with their values for step 2) at `ix`. */
static PyObject *build_frame(PyObject *argv, Py_ssize_t step, PyObject *ix) {
    Py_ssize_t argc = PyList_GET_SIZE(argv);
    PyObject *head = PyList_GET_ITEM(argv, 0);
    if (!PyBytes_Check(head)) {
        PyErr_SetString(PyExc_TypeError, "split: argv[0] must be bytes");
        return NULL;
    }
    Py_ssize_t m = PyList_GET_SIZE(ix);
    Py_ssize_t nargs2 = 1 + m * step;
    Py_ssize_t size = 1 + ndigits(nargs2) + 2 + bulk_size(head);
    for (Py_ssize_t q = 0; q < m; q++) {
        Py_ssize_t j = PyLong_AsSsize_t(PyList_GET_ITEM(ix, q));
        for (Py_ssize_t e = 0; e < step; e++) {
            Py_ssize_t a = 1 + j * step + e;
            PyObject *b = (j >= 0 && a < argc) ? PyList_GET_ITEM(argv, a) : NULL;
            if (b == NULL || !is_arg(b)) {
                PyErr_SetString(PyExc_TypeError, "split: incomplete key/value pair");
                return NULL;
            }
            size += bulk_size(b);
        }
    }
    PyObject *f = PyBytes_FromStringAndSize(NULL, size);
    if (f == NULL) return NULL;
    char *w = put_header(PyBytes_AS_STRING(f), '*', nargs2);
    w = put_bulk(w, head);
    for (Py_ssize_t q = 0; q < m; q++) {
        Py_ssize_t j = PyLong_AsSsize_t(PyList_GET_ITEM(ix, q));
        for (Py_ssize_t e = 0; e < step; e++) w = put_bulk(w, PyList_GET_ITEM(argv, 1 + j * step + e));
    }
    return f;
}

/*
 * split_plan(argv, step, by_slot, mask, slot_ops) -> (dests, idxs, frames)
 *   keys are argv[1::step] (step 2: MSET, each key followed by its value). dests: one entry
 *   per destination in order of first appearance, the owning group or, for a slot without an
 *   owner, the slot number (one destination per such slot); idxs[k]: indices into the keys
 *   of dests[k], ascending; frames: the packed sub-request of each destination, or None when
 *   there is only one destination (the original request is forwarded unchanged).
 */
static PyObject *py_split_plan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "split_plan(argv, step, by_slot, mask, slot_ops)");
        return NULL;
    }
    PyObject *argv = args[0], *by_slot = args[2], *slot_ops = args[4];
    Py_ssize_t step = PyLong_AsSsize_t(args[1]);
    long mask = PyLong_AsLong(args[3]);
    if (PyErr_Occurred()) return NULL;
    if (!PyList_CheckExact(argv) || !PyList_CheckExact(by_slot) || step < 1) {
        PyErr_SetString(PyExc_TypeError, "split_plan(): argv and by_slot must be lists");
        return NULL;
    }
    Py_ssize_t argc = PyList_GET_SIZE(argv);
    Py_ssize_t nkeys = argc > 1 ? (argc - 1 + step - 1) / step : 0;
    PyObject *dests = PyList_New(0), *idxs = PyList_New(0), *frames = NULL;
    Py_ssize_t *dest_of = NULL;  /* destination index of each key */
    if (dests == NULL || idxs == NULL) goto error;
    dest_of = PyMem_Malloc((size_t)(nkeys ? nkeys : 1) * sizeof(Py_ssize_t));
    if (dest_of == NULL) { PyErr_NoMemory(); goto error; }
    for (Py_ssize_t j = 0; j < nkeys; j++) {
        PyObject *key = PyList_GET_ITEM(argv, 1 + j * step);
        if (!PyBytes_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "split_plan(): keys must be bytes");
            goto error;
        }
        Py_ssize_t slot = (Py_ssize_t)(key_hash((const unsigned char *)PyBytes_AS_STRING(key),
                                                PyBytes_GET_SIZE(key)) & (unsigned long)mask);
        if (slot_ops_incr(slot_ops, slot) < 0) goto error;
        PyObject *g = slot < PyList_GET_SIZE(by_slot) ? PyList_GET_ITEM(by_slot, slot) : Py_None;
        PyObject *dest;
        if (g == Py_None) {
            dest = PyLong_FromSsize_t(slot);
            if (dest == NULL) goto error;
        } else {
            dest = g;
            Py_INCREF(dest);
        }
        /* Few destinations (groups): a linear scan beats hashing. Groups compare by
         * identity, slot numbers by value, as dict keys would. */
        Py_ssize_t nd = PyList_GET_SIZE(dests), k;
        for (k = 0; k < nd; k++) {
            PyObject *d = PyList_GET_ITEM(dests, k);
            if (d == dest) break;
            if (g == Py_None && PyLong_CheckExact(d)
                && PyLong_AsSsize_t(d) == slot) break;
        }
        PyObject *jj = PyLong_FromSsize_t(j);
        if (jj == NULL) { Py_DECREF(dest); goto error; }
        if (k == nd) {
            PyObject *l = PyList_New(1);
            if (l == NULL || PyList_Append(dests, dest) < 0 || PyList_Append(idxs, l) < 0) {
                Py_XDECREF(l);
                Py_DECREF(jj);
                Py_DECREF(dest);
                goto error;
            }
            PyList_SET_ITEM(l, 0, jj);
            Py_DECREF(l);
        } else {
            int r = PyList_Append(PyList_GET_ITEM(idxs, k), jj);
            Py_DECREF(jj);
            if (r < 0) { Py_DECREF(dest); goto error; }
        }
        Py_DECREF(dest);
        dest_of[j] = k;
    }
    Py_ssize_t nd = PyList_GET_SIZE(dests);
    if (nd <= 1) {
        frames = Py_None;
        Py_INCREF(frames);
    } else {
        frames = PyList_New(nd);
        if (frames == NULL) goto error;
        PyObject *head = PyList_GET_ITEM(argv, 0);
        if (!PyBytes_Check(head)) {
            PyErr_SetString(PyExc_TypeError, "split_plan(): argv[0] must be bytes");
            goto error;
        }
        for (Py_ssize_t k = 0; k < nd; k++) {
            PyObject *f = build_frame(argv, step, PyList_GET_ITEM(idxs, k));
            if (f == NULL) goto error;
            PyList_SET_ITEM(frames, k, f);
        }
    }
    PyMem_Free(dest_of);
    PyObject *res = PyTuple_Pack(3, dests, idxs, frames);
    Py_DECREF(dests);
    Py_DECREF(idxs);
    Py_DECREF(frames);
    return res;
error:
    PyMem_Free(dest_of);
    Py_XDECREF(dests);
    Py_XDECREF(idxs);
    Py_XDECREF(frames);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Module
 * ---------------------------------------------------------------------------------------- */

static PyObject *py_pack_list(PyObject *self, PyObject *arg) {
    if (!PyList_CheckExact(arg)) {
        PyErr_SetString(PyExc_TypeError, "pack_list() takes a list of bytes");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(arg); i++)
        if (!PyBytes_Check(PyList_GET_ITEM(arg, i))) {
            PyErr_SetString(PyExc_TypeError, "pack_list() takes a list of bytes");
            return NULL;
        }
    return pack_list(arg);
}

static PyMethodDef module_methods[] = {
    {"crc16", (PyCFunction)py_crc16, METH_O, "CRC16-XMODEM of a bytes-like object."},
    {"key_slot", (PyCFunction)(void (*)(void))py_key_slot, METH_FASTCALL,
     "key_slot(key, nslots=16384): slot of key (hash-tag rule), nslots a power of two."},
    {"split_inline_args", (PyCFunction)py_split_inline_args, METH_O,
     "Split an inline request line like sdssplitargs; None on unbalanced quotes."},
    {"pack_list", (PyCFunction)py_pack_list, METH_O, "Canonical RESP encoding of a list of bytes."},
    {"deliver", (PyCFunction)(void (*)(void))py_deliver, METH_FASTCALL,
     "deliver(fifo, replies): fifo.popleft().resolve(raw) for each reply, in order."},
    {"set_client_hooks", (PyCFunction)(void (*)(void))py_set_client_hooks, METH_FASTCALL,
     "set_client_hooks(timed_slot, up): what the compiled data_received calls and compares."},
    {"fast_run", (PyCFunction)(void (*)(void))py_fast_run, METH_FASTCALL,
     "The client connection's fast path over reqs[i:]; returns where it stopped."},
    {"count_calls", (PyCFunction)(void (*)(void))py_count_calls, METH_FASTCALL,
     "count_calls(calls, reqs): calls[argv[0]] += 1 for each request (metrics)."},
    {"split_plan", (PyCFunction)(void (*)(void))py_split_plan, METH_FASTCALL,
     "split_plan(argv, step, by_slot, mask, slot_ops) -> (dests, idxs, frames)."},
    {NULL}
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "proxy._accel._speedups",
    "slotproxy's compiled request/reply hot path (pure-Python twins are the reference).", -1,
    module_methods,
};

#define INTERN(var, s) do { if ((var = PyUnicode_InternFromString(s)) == NULL) return NULL; } while (0)

PyMODINIT_FUNC PyInit__speedups(void) {
    crc_init();
    {
        PyObject *coll = PyImport_ImportModule("collections");
        if (coll == NULL) return NULL;
        PyObject *dq = PyObject_GetAttrString(coll, "deque");
        Py_DECREF(coll);
        if (dq == NULL) return NULL;
        if (!PyType_Check(dq)) {
            Py_DECREF(dq);
            PyErr_SetString(PyExc_ImportError, "collections.deque is not a type");
            return NULL;
        }
        deque_type = (PyTypeObject *)dq;  /* kept for the process's life */
        if ((deque_append = PyObject_GetAttrString(dq, "append")) == NULL
            || (deque_popleft = PyObject_GetAttrString(dq, "popleft")) == NULL)
            return NULL;
    }
    INTERN(s_fifo, "fifo");
    INTERN(s_reader, "reader");
    INTERN(s_errors, "errors");
    INTERN(s__unparsable, "_unparsable");
    INTERN(s__unrequested, "_unrequested");
    INTERN(s_activity, "activity");
    INTERN(s_last_read, "last_read");
    INTERN(s__time, "_time");
    INTERN(s_stats, "stats");
    INTERN(s_bytes_in, "bytes_in");
    INTERN(s_bytes_out, "bytes_out");
    INTERN(s_closing, "closing");
    INTERN(s_stash, "stash");
    INTERN(s_parser, "parser");
    INTERN(s_backlog, "backlog");
    INTERN(s_lane_barrier, "lane_barrier");
    INTERN(s_max_pipeline, "max_pipeline");
    INTERN(s_mode, "mode");
    INTERN(s_fast_path, "fast_path");
    INTERN(s_reply_ctl, "reply_ctl");
    INTERN(s_read_from, "read_from");
    INTERN(s_services, "services");
    INTERN(s_table, "table");
    INTERN(s_fast_arity, "fast_arity");
    INTERN(s_split_kinds, "split_kinds");
    INTERN(s_router, "router");
    INTERN(s_by_slot, "by_slot");
    INTERN(s_mask, "mask");
    INTERN(s_slot_ops, "slot_ops");
    INTERN(s_hotkeys, "hotkeys");
    INTERN(s_meter, "meter");
    INTERN(s_enabled, "enabled");
    INTERN(s_lane, "lane");
    INTERN(s_cmd, "cmd");
    INTERN(s_commands, "commands");
    INTERN(s_transport, "transport");
    INTERN(s_write, "write");
    INTERN(s_write_paused, "write_paused");
    INTERN(s_eof, "eof");
    INTERN(s_feed, "feed");
    INTERN(s__serve, "_serve");
    INTERN(s__dispatch_chunk_compiled, "_dispatch_chunk_compiled");
    INTERN(s__after_read, "_after_read");
    INTERN(s__py_data_received, "_py_data_received");
    INTERN(s__after_write, "_after_write");
    INTERN(s__stash, "_stash");
    INTERN(s_counters, "counters");
    INTERN(s_requests, "requests");
    INTERN(s_out, "out");
    INTERN(s_dirty, "dirty");
    INTERN(s_flusher, "flusher");
    INTERN(s_mark, "mark");
    INTERN(s_pipeline_paused, "pipeline_paused");
    INTERN(s_pipeline_progress, "pipeline_progress");
    INTERN(s_append, "append");
    INTERN(s_popleft, "popleft");
    INTERN(s_resolve, "resolve");
    INTERN(s_lanes, "lanes");
    INTERN(s_state, "state");
    INTERN(s_send, "send");
    INTERN(s_data, "data");
    INTERN(s_max_bulk_len, "max_bulk_len");
    INTERN(s_max_multibulk_len, "max_multibulk_len");
    INTERN(s_max_inline_len, "max_inline_len");
    INTERN(s_countdown, "countdown");
    INTERN(s_slow_countdown, "slow_countdown");
    INTERN(s_every, "every");
    INTERN(s_sample, "sample");
    INTERN(s_call_soon, "call_soon");
    INTERN(s_flush, "flush");
    INTERN(s__run, "_run");
    INTERN(s_count, "count");
    INTERN(s_failed, "failed");
    INTERN(s_sum_ns, "sum_ns");
    INTERN(s_buckets, "buckets");
    INTERN(s_slowlog, "slowlog");
    INTERN(s_slower_than, "slower_than");
    INTERN(s_slow_entry, "slow_entry");
    {
        PyObject *h = PyImport_ImportModule("proxy.observe.histogram");
        if (h == NULL) return NULL;
        if (get_ll(h, PyUnicode_InternFromString("FIRST_POW"), &hist_first) < 0
            || get_ll(h, PyUnicode_InternFromString("NBUCKETS"), &hist_last) < 0) {
            Py_DECREF(h);
            return NULL;
        }
        hist_last -= 1;
        Py_DECREF(h);
    }
    if ((OK_BYTES = PyBytes_FromString("+OK\r\n")) == NULL) return NULL;
    PyObject *resp = PyImport_ImportModule("slotcore.resp");
    if (resp == NULL) return NULL;
    ProtocolError = PyObject_GetAttrString(resp, "ProtocolError");
    Py_DECREF(resp);
    if (ProtocolError == NULL) return NULL;
    if (PyType_Ready(&RequestParserType) < 0 || PyType_Ready(&ReplyReaderType) < 0
        || PyType_Ready(&ReplySlotType) < 0 || PyType_Ready(&FlusherType) < 0
        || PyType_Ready(&GatherType) < 0 || PyType_Ready(&GatherPartType) < 0
        || PyType_Ready(&CallCountsType) < 0 || PyType_Ready(&ClientCountersType) < 0
        || PyType_Ready(&TrafficCountersType) < 0 || PyType_Ready(&ArgRefType) < 0)
        return NULL;
    TimedSlotType.tp_base = &ReplySlotType;
    if (PyType_Ready(&TimedSlotType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&speedups_module);
    if (m == NULL) return NULL;
    Py_INCREF(&RequestParserType);
    Py_INCREF(&ReplyReaderType);
    Py_INCREF(&ReplySlotType);
    Py_INCREF(&FlusherType);
    Py_INCREF(&GatherType);
    Py_INCREF(&GatherPartType);
    Py_INCREF(&CallCountsType);
    Py_INCREF(&TimedSlotType);
    Py_INCREF(&ClientCountersType);
    Py_INCREF(&TrafficCountersType);
    if (PyModule_AddObject(m, "ClientCounters", (PyObject *)&ClientCountersType) < 0 ||
        PyModule_AddObject(m, "TrafficCounters", (PyObject *)&TrafficCountersType) < 0 ||
        PyModule_AddObject(m, "CallCounts", (PyObject *)&CallCountsType) < 0 ||
        PyModule_AddObject(m, "TimedSlot", (PyObject *)&TimedSlotType) < 0 ||
        PyModule_AddObject(m, "Flusher", (PyObject *)&FlusherType) < 0 ||
        PyModule_AddObject(m, "Gather", (PyObject *)&GatherType) < 0 ||
        PyModule_AddObject(m, "GatherPart", (PyObject *)&GatherPartType) < 0 ||
        PyModule_AddObject(m, "RequestParser", (PyObject *)&RequestParserType) < 0
        || PyModule_AddObject(m, "ReplyReader", (PyObject *)&ReplyReaderType) < 0
        || PyModule_AddObject(m, "ReplySlot", (PyObject *)&ReplySlotType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    /* Methods for Python classes (CompiledClientConnection, CompiledBackendConn): method
     * descriptors bound to any object, so `conn.flush` is a C call with no Python frame. */
    struct { const char *name; PyMethodDef *def; } meths[] = {
        {"client_data_received", &cl_data_received_def}, {"client_flush", &cl_flush_def},
        {"backend_flush", &bk_flush_def}, {"backend_data_received", &bk_data_received_def}};
    for (size_t k = 0; k < sizeof meths / sizeof meths[0]; k++) {
        PyObject *d = PyDescr_NewMethod(&PyBaseObject_Type, meths[k].def);
        if (d == NULL || PyModule_AddObject(m, meths[k].name, d) < 0) {
            Py_XDECREF(d);
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
