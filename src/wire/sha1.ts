/**
 * SHA-1 (FIPS 180-4), platform-free: what Calico names a workload's host-side veth with
 * (libcalico-go's VethNameForWorkload: "cali" + hex(sha1("NAMESPACE.POD"))[:11]).
 */
import { digestBytes, mdPad } from './sha256.ts';

const rotl = (x: number, n: number) => (x << n) | (x >>> (32 - n));

/** the message schedule, reused (a digest is computed in one call: nothing else runs between) */
const w = new Uint32Array(80);

/** SHA-1 of the bytes */
export function sha1(data: Uint8Array): Uint8Array {
  const { padded, dv } = mdPad(data);
  const h = new Uint32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0]);
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = dv.getUint32(off + i * 4);
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
  return digestBytes(h);
}

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/** lower-case hex of the bytes */
export function hex(data: Uint8Array): string {
  let out = '';
  for (let i = 0; i < data.length; i++) out += HEX[data[i]];
  return out;
}
