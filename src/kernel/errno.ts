/**
 * The errno values the modelled kernel answers with (asm-generic/errno-base.h, errno.h) and their
 * strerror() texts (glibc), which the tools print ("RTNETLINK answers: File exists").
 */
export const ERRNO = {
  EPERM: [1, 'Operation not permitted'],
  ENOENT: [2, 'No such file or directory'],
  ESRCH: [3, 'No such process'],
  EACCES: [13, 'Permission denied'],
  EBUSY: [16, 'Device or resource busy'],
  EEXIST: [17, 'File exists'],
  EXDEV: [18, 'Invalid cross-device link'],
  ENODEV: [19, 'No such device'],
  EINVAL: [22, 'Invalid argument'],
  ERANGE: [34, 'Numerical result out of range'],
  ELOOP: [40, 'Too many levels of symbolic links'],
  EMSGSIZE: [90, 'Message too long'],
  EOPNOTSUPP: [95, 'Operation not supported'],
  EAFNOSUPPORT: [97, 'Address family not supported by protocol'],
  EADDRNOTAVAIL: [99, 'Cannot assign requested address'],
  ENETDOWN: [100, 'Network is down'],
  ENETUNREACH: [101, 'Network is unreachable'],
  ECONNRESET: [104, 'Connection reset by peer'],
  ENOBUFS: [105, 'No buffer space available'],
  ETIMEDOUT: [110, 'Connection timed out'],
  ECONNREFUSED: [111, 'Connection refused'],
  EHOSTUNREACH: [113, 'No route to host'],
} as const satisfies Record<string, readonly [number, string]>;

export type Errno = keyof typeof ERRNO;

/** strerror(3) of an errno name */
export function strerror(e: Errno): string {
  return ERRNO[e][1];
}

/** the errno number of a name (EEXIST → 17) */
export function errnoNumber(e: Errno): number {
  return ERRNO[e][0];
}
