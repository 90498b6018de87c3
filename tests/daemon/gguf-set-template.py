#!/usr/bin/env python3
"""gguf-set-template.py IN.gguf TEMPLATE.jinja OUT.gguf: a copy of a GGUF
(v2/v3) with tokenizer.chat_template set to the template's text (added, or
replaced), the rest unchanged; the tensor data moves to the new aligned
offset. Used by tools-e2e.sh to give the shared stories260K a Jinja chat
template. Only the standard library; follows the GGUF layout of
../shared/docs/FORMATS.md (header, key/values, tensor infos, padding, data)."""
import struct
import sys

SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # scalar value types
STRING, ARRAY = 8, 9


def read_str(b, o):
    n = struct.unpack_from('<Q', b, o)[0]
    return b[o + 8:o + 8 + n], o + 8 + n


def skip_value(b, o, t):
    if t in SIZES:
        return o + SIZES[t]
    if t == STRING:
        return read_str(b, o)[1]
    if t == ARRAY:
        et, n = struct.unpack_from('<IQ', b, o)
        o += 12
        for _ in range(n):
            o = skip_value(b, o, et)
        return o
    raise ValueError(f'unknown GGUF value type {t}')


def main():
    src, tmpl, dst = sys.argv[1:4]
    b = open(src, 'rb').read()
    text = open(tmpl, 'rb').read()
    magic, version, n_tensors, n_kv = struct.unpack_from('<4sIQQ', b, 0)
    if magic != b'GGUF' or version not in (2, 3):
        sys.exit(f'{src}: not a GGUF v2/v3 file')
    o = 24
    kvs = []
    align = 32
    for _ in range(n_kv):
        start = o
        key, o = read_str(b, o)
        t = struct.unpack_from('<I', b, o)[0]
        end = skip_value(b, o + 4, t)
        if key == b'general.alignment':
            align = struct.unpack_from('<I', b, o + 4)[0]
        if key != b'tokenizer.chat_template':
            kvs.append(b[start:end])
        o = end
    infos_start = o
    for _ in range(n_tensors):
        _, o = read_str(b, o)
        n_dims = struct.unpack_from('<I', b, o)[0]
        o += 4 + 8 * n_dims + 4 + 8
    infos = b[infos_start:o]
    data_start = (o + align - 1) // align * align
    key = b'tokenizer.chat_template'
    kvs.append(struct.pack('<Q', len(key)) + key + struct.pack('<IQ', STRING, len(text)) + text)
    head = struct.pack('<4sIQQ', b'GGUF', version, n_tensors, len(kvs)) + b''.join(kvs) + infos
    pad = (-len(head)) % align
    with open(dst, 'wb') as f:
        f.write(head + b'\0' * pad + b[data_start:])


if __name__ == '__main__':
    main()
