/**
 * SHA-256 and SHA-224 (FIPS 180-4), RFC 4648 base32 and unpadded base64url, platform-free: what
 * kube-proxy's chain names are made of (`base32.StdEncoding.EncodeToString(sha256.Sum256(...))[:16]`),
 * and felix's rule hashes (`base64.RawURLEncoding` of chained SHA-224s) and shortened chain names.
 */

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

/** The Merkle–Damgård padding of SHA-1 and SHA-256: 0x80, zeros, the bit length (64-bit big-endian) */
export function mdPad(data: Uint8Array): { padded: Uint8Array; dv: DataView } {
  const bitLen = data.length * 8;
  const padded = new Uint8Array((((data.length + 8) >> 6) + 1) << 6);
  padded.set(data);
  padded[data.length] = 0x80;
  const dv = new DataView(padded.buffer);
  dv.setUint32(padded.length - 8, Math.floor(bitLen / 2 ** 32));
  dv.setUint32(padded.length - 4, bitLen >>> 0);
  return { padded, dv };
}

/** the state words, big-endian: the digest */
export function digestBytes(h: Uint32Array): Uint8Array {
  const out = new Uint8Array(h.length * 4);
  for (let i = 0, j = 0; i < h.length; i++, j += 4) {
    const x = h[i];
    out[j] = x >>> 24;
    out[j + 1] = x >>> 16;
    out[j + 2] = x >>> 8;
    out[j + 3] = x;
  }
  return out;
}

const IV256 = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const IV224 = [
  0xc1059ed8, 0x367cd507, 0x3070dd17, 0xf70e5939, 0xffc00b31, 0x68581511, 0x64f98fa7, 0xbefa4fa4,
];

/** SHA-256 of the bytes */
export function sha256(data: Uint8Array): Uint8Array {
  return compress(data, IV256);
}

/** SHA-224 of the bytes: SHA-256's rounds from another initial state, the first 7 words */
export function sha224(data: Uint8Array): Uint8Array {
  return compress(data, IV224).subarray(0, 28);
}

/** the message schedule and the padded message, reused: compress runs to completion before anyone else calls it */
const W = new Int32Array(64);
let PAD = new Uint8Array(256);

function compress(data: Uint8Array, iv: readonly number[]): Uint8Array {
  // mdPad into the reused buffer: the data, 0x80, zeros, the bit length
  const len = (((data.length + 8) >> 6) + 1) << 6;
  if (PAD.length < len) PAD = new Uint8Array(len * 2);
  const padded = PAD;
  padded.set(data);
  padded.fill(0, data.length, len);
  padded[data.length] = 0x80;
  const bitLen = data.length * 8;
  const hi = Math.floor(bitLen / 2 ** 32);
  const lo = bitLen >>> 0;
  padded[len - 8] = hi >>> 24;
  padded[len - 7] = hi >>> 16;
  padded[len - 6] = hi >>> 8;
  padded[len - 5] = hi;
  padded[len - 4] = lo >>> 24;
  padded[len - 3] = lo >>> 16;
  padded[len - 2] = lo >>> 8;
  padded[len - 1] = lo;
  const w = W;
  let h0 = iv[0] | 0;
  let h1 = iv[1] | 0;
  let h2 = iv[2] | 0;
  let h3 = iv[3] | 0;
  let h4 = iv[4] | 0;
  let h5 = iv[5] | 0;
  let h6 = iv[6] | 0;
  let h7 = iv[7] | 0;
  for (let off = 0; off < len; off += 64) {
    for (let i = 0, j = off; i < 16; i++, j += 4)
      w[i] = (padded[j] << 24) | (padded[j + 1] << 16) | (padded[j + 2] << 8) | padded[j + 3];
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15];
      const y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h0;
    let b = h1;
    let c = h2;
    let d = h3;
    let e = h4;
    let f = h5;
    let g = h6;
    let hh = h7;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
    h5 = (h5 + f) | 0;
    h6 = (h6 + g) | 0;
    h7 = (h7 + hh) | 0;
  }
  return digestBytes(Uint32Array.of(h0, h1, h2, h3, h4, h5, h6, h7));
}

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 with padding (Go's base32.StdEncoding) */
export function base32(data: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const x of data) {
    value = ((value << 8) | x) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  while (out.length % 8) out += '=';
  return out;
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** RFC 4648 base64url without padding (Go's base64.RawURLEncoding) */
export function base64Url(data: Uint8Array): string {
  let out = '';
  for (let i = 0; i < data.length; i += 3) {
    const n = (data[i] << 16) | ((data[i + 1] ?? 0) << 8) | (data[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((data.length - i) * 8) / 6));
    for (let k = 0; k < chars; k++) out += B64URL[(n >>> (18 - 6 * k)) & 63];
  }
  return out;
}

/** UTF-8 bytes of a string */
export function utf8(s: string): Uint8Array {
  // ASCII (every rule, chain and interface name): one byte a character
  const ascii = new Uint8Array(s.length);
  let i = 0;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) break;
    ascii[i] = c;
  }
  if (i === s.length) return ascii;
  const out: number[] = [];
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}
