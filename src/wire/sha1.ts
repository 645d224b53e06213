/**
 * SHA-1 (FIPS 180-4), platform-free: what Calico names a workload's host-side veth with
 * (libcalico-go's VethNameForWorkload: "cali" + hex(sha1("NAMESPACE.POD"))[:11]).
 */
import { digestBytes, mdPad, utf8 } from './sha256.ts';

const rotl = (x: number, n: number) => (x << n) | (x >>> (32 - n));

/** the message schedule, reused (a digest is computed in one call: nothing else runs between) */
const w = new Uint32Array(80);

/** SHA-1's initial state */
const H0 = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0];

/** SHA-1 of the bytes */
export function sha1(data: Uint8Array): Uint8Array {
  const { padded, dv } = mdPad(data);
  const h = new Uint32Array(H0);
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = dv.getUint32(off + i * 4);
    compress(h);
  }
  return digestBytes(h);
}

/** one block, its 16 words in w[0..15], into the state h */
function compress(h: Uint32Array): void {
  for (let i = 16; i < 80; i++) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  let a = h[0];
  let b = h[1];
  let c = h[2];
  let d = h[3];
  let e = h[4];
  // the four rounds' functions and constants, a loop each (no value made per step)
  for (let i = 0; i < 80; i++) {
    const f =
      i < 20 ? (b & c) | (~b & d) : i < 40 ? b ^ c ^ d : i < 60 ? (b & c) | (b & d) | (c & d) : b ^ c ^ d;
    const k = i < 20 ? 0x5a827999 : i < 40 ? 0x6ed9eba1 : i < 60 ? 0x8f1bbcdc : 0xca62c1d6;
    const t = (rotl(a, 5) + f + e + k + w[i]) | 0;
    e = d;
    d = c;
    c = rotl(b, 30);
    b = a;
    a = t;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

/** the state of sha1Hex's one-block digests, reused */
const state = new Uint32Array(5);

/**
 * The first `digits` lower-case hex digits of the SHA-1 of the string's UTF-8 bytes:
 * `hex(sha1(utf8(s))).slice(0, digits)`. A string of ASCII characters that fits one block (at
 * most 55 bytes with its padding: a Calico workload's `NAMESPACE.POD`) is hashed straight from its
 * characters, with no bytes, padding or digest made.
 */
export function sha1Hex(s: string, digits = 40): string {
  const n = s.length;
  let ascii = n <= 55;
  for (let i = 0; i < n && ascii; i++) ascii = s.charCodeAt(i) < 0x80;
  if (!ascii) return hex(sha1(utf8(s))).slice(0, digits);
  w.fill(0, 0, 16);
  for (let i = 0; i < n; i++) w[i >>> 2] |= s.charCodeAt(i) << (24 - 8 * (i & 3));
  w[n >>> 2] |= 0x80 << (24 - 8 * (n & 3));
  w[15] = n * 8;
  state.set(H0);
  compress(state);
  let out = '';
  for (let i = 0; i < digits; i++) out += HEXDIGIT[(state[i >>> 3] >>> (28 - 4 * (i & 7))) & 15];
  return out;
}

const HEXDIGIT = '0123456789abcdef';

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/** lower-case hex of the bytes */
export function hex(data: Uint8Array): string {
  let out = '';
  for (let i = 0; i < data.length; i++) out += HEX[data[i]];
  return out;
}
