// A jsdom window as the global environment, for @testing-library/react
// under `node --test`. Imported before React and the testing library.

import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>', { url: 'http://localhost/' });
const { window } = dom;
for (const name of ['window', 'document', 'navigator', 'HTMLElement', 'Node', 'Element', 'Event', 'MouseEvent', 'getComputedStyle']) {
  Object.defineProperty(globalThis, name, { value: name === 'window' ? window : window[name], configurable: true, writable: true });
}
// Node's own fetch, streams and timers stay: the hooks reach a real node.
// Updates arrive from the live event stream, outside act(): the tests wait
// for what the user would see (findBy…, waitFor) instead.
globalThis.IS_REACT_ACT_ENVIRONMENT = false;
