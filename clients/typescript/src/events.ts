/**
 * The live events of `GET /api/database/events`, read as Server-Sent Events
 * over `fetch` rather than `EventSource`: `EventSource` cannot send the
 * `Authorization` header the node asks for off loopback, and `fetch`
 * streams work the same in browsers and in Node 20.
 */

import type { OutpostEvent } from './types.js';

/** Parses an SSE byte stream into events; comments and unknown events are skipped. */
export async function* parseEvents(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<OutpostEvent, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let name = 'message';
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (data.length > 0) {
            const event = decode(name, data.join('\n'));
            if (event) yield event;
          }
          name = 'message';
          data = [];
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'event') name = value;
          else if (field === 'data') data.push(value);
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function decode(name: string, text: string): OutpostEvent | null {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return null;
  }
  switch (name) {
    case 'status':
    case 'progress':
    case 'sync':
    case 'changed':
      return { type: name, data } as OutpostEvent;
    default:
      return null;
  }
}
