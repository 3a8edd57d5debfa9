/**
 * outpost-client: a typed client of an outpost node's HTTP API. The React
 * hooks of the original description are in `outpost-client/react`.
 */

export { OutpostClient, OutpostError } from './client.js';
export type { ClientOptions, SubscribeOptions, Subscription } from './client.js';
export { parseEvents } from './events.js';
export type * from './types.js';
