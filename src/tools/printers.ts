/**
 * The printers of kernel objects that trace steps share with the emulated tools: a route as
 * `ip route` prints it, a neighbour as `ip neigh`, a bridge FDB entry as `bridge fdb`. One print
 * call per object feeds the tool and the trace (iproute2's habit).
 */
export { routeEntryText } from './iproute-route.ts';
export { neighEntryText } from './ip.ts';
export { fdbEntryText } from './bridge.ts';
