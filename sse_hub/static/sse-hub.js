/**
 * sse-hub.js: subscribe to an sse-hub stream where the native EventSource cannot.
 *
 * - sends headers (an `Authorization: Bearer` token, re-read at every connect when it is
 *   a function, so a refreshed token is used after a reconnect);
 * - sees every event whatever its name (`onEvent`), besides EventSource-style
 *   `addEventListener(name, ...)`;
 * - reconnects by itself with exponential backoff from the server's `retry:` value
 *   (jittered, capped), honours `Retry-After` on 429/503, and resends the last id as
 *   `Last-Event-ID` so the hub replays what was missed;
 * - surfaces the hub's `reset` event (`onReset`), sent when the history no longer holds
 *   everything after the last id: the page should reload its state;
 * - knows streams that end: the hub sends an `end` event (`onEnd(channel)`) after a
 *   channel's final message; once every channel of the stream (as its `connected` event
 *   listed them) has ended, or when the hub answers `204 No Content` (nothing more will
 *   come), the subscription is "finished" (`onFinished`) and never reconnects;
 * - `from: "start"` asks for every retained message (`?from=start`) until an id was seen,
 *   then `Last-Event-ID` takes over.
 *
 * The stream is read with fetch() and a ReadableStream and parsed as WHATWG HTML 9.2.6
 * "Interpreting an event stream" says: UTF-8, lines end at CRLF, LF or CR, one data
 * buffer per event joined with LF, `id` with NUL ignored, `retry` only when all digits.
 *
 * Dependency free. An ES module (`import { subscribe } from "/sse-hub.js"`) that also
 * sets `globalThis.SseHub` for pages that load it with `<script type="module" src>`.
 * See docs/api.md for a copy-paste example.
 */

const DEFAULT_RETRY_MS = 3000;
const DEFAULT_MAX_RETRY_MS = 30000;
// 4xx answers that retrying cannot fix; 408 and 429 are worth another try.
const RETRYABLE_CLIENT_ERRORS = new Set([408, 429]);
// The hub's own events, with JSON data and no id: they go to their callbacks, not onEvent.
const CONTROL_EVENTS = new Set(["connected", "reset", "end"]);

/** Incremental event-stream parser: `feed()` decoded text, get events through `onEvent`. */
export class EventStreamParser {
  /**
   * @param {(event: {event: string, data: string, id: string}) => void} onEvent
   * @param {(retryMs: number) => void} [onRetry]
   */
  constructor(onEvent, onRetry = () => {}) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.lastEventId = "";
    this.buffer = "";
    this.data = [];
    this.hasData = false;
    this.eventType = "";
  }

  /** Feed text; a CR at the very end waits for the next chunk (it may start a CRLF). */
  feed(text) {
    const buffer = this.buffer + text;
    const lineEnd = /\r\n|\r|\n/g;
    let start = 0;
    let match;
    while ((match = lineEnd.exec(buffer)) !== null) {
      if (match[0] === "\r" && match.index === buffer.length - 1) break;
      this.line(buffer.slice(start, match.index));
      start = lineEnd.lastIndex;
    }
    this.buffer = buffer.slice(start);
  }

  /** The stream ended: a pending CR ends its line; an unfinished event is discarded. */
  end() {
    if (this.buffer.endsWith("\r")) this.feed("\n");
    this.buffer = "";
    this.data = [];
    this.hasData = false;
    this.eventType = "";
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line[0] === ":") return; // a comment (the hub's heartbeat)
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "data") {
      this.data.push(value);
      this.hasData = true;
    } else if (field === "event") {
      this.eventType = value;
    } else if (field === "id") {
      if (!value.includes("\0")) this.lastEventId = value;
    } else if (field === "retry") {
      if (/^[0-9]+$/.test(value)) this.onRetry(Number(value));
    }
  }

  dispatch() {
    // The last event id is set even by a block without data (spec step 1).
    const hasData = this.hasData;
    const event = { event: this.eventType || "message", data: this.data.join("\n"), id: this.lastEventId };
    this.data = [];
    this.hasData = false;
    this.eventType = "";
    if (hasData) this.onEvent(event);
  }
}

/**
 * One subscription: connects at once, reconnects until `close()` or until the hub says
 * the stream has ended.
 *
 * Dispatches a MessageEvent per SSE event, named like the event (as EventSource does),
 * plus `statechange` and `finished`. States: "connecting", "open", "reconnecting", and
 * two that last: "closed" (by `close()` or a refusal) and "finished" (the channels ended).
 * `ended` holds the channels whose `end` event came, each reported once (a resume may
 * bring an `end` again).
 */
export class Subscription extends EventTarget {
  /**
   * @param {string | URL} url  e.g. "/events?channel=orders" (relative URLs are fine)
   * @param {object} [options]
   * @param {string | (() => string | null | Promise<string | null>)} [options.token]
   *        sent as `Authorization: Bearer <token>`; a function is called at every connect
   * @param {Record<string, string>} [options.headers] more request headers
   * @param {string} [options.lastEventId] resume after this id from the start
   * @param {"start"} [options.from] with no id yet, replay every retained message first
   * @param {number} [options.retryMs] first reconnect delay until the server sends `retry:`
   * @param {number} [options.maxRetryMs] the backoff cap (default 30 s)
   * @param {RequestCredentials} [options.credentials] fetch credentials (default same-origin)
   * @param {(event: {event: string, data: string, id: string}) => void} [options.onEvent]
   *        every event except `connected`, `reset` and `end`, whatever its name
   * @param {(info: {client_id: string, channels: string[]}) => void} [options.onOpen]
   * @param {(info: {reason: string, last_event_id: string}) => void} [options.onReset]
   * @param {(channel: string) => void} [options.onEnd] a channel ended (after its final message)
   * @param {() => void} [options.onFinished] every channel ended (or 204): no reconnection
   * @param {(state: string) => void} [options.onStateChange]
   * @param {(error: Error & {status?: number, body?: unknown, fatal?: boolean}) => void} [options.onError]
   */
  constructor(url, options = {}) {
    super();
    this.url = new URL(url, globalThis.location ? globalThis.location.href : undefined).href;
    this.options = options;
    this.lastEventId = options.lastEventId || "";
    this.clientId = null;
    this.channels = null;
    this.ended = new Set();
    this.state = "connecting";
    this.retryMs = options.retryMs ?? DEFAULT_RETRY_MS;
    this.maxRetryMs = options.maxRetryMs ?? DEFAULT_MAX_RETRY_MS;
    this.failures = 0;
    this.closed = false;
    this.controller = null;
    this.timer = null;
    this.run();
  }

  /** Stop for good: aborts the request and any pending reconnect. */
  close() {
    this.stop();
    if (this.state !== "finished") this.setState("closed");
  }

  /** The hub ended the stream for good: its channels ended, or it answered 204. */
  finish() {
    this.stop();
    this.setState("finished");
    this.call("onFinished");
    this.dispatchEvent(new Event("finished"));
  }

  stop() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.call("onStateChange", state);
    this.dispatchEvent(new Event("statechange"));
  }

  call(name, value) {
    const callback = this.options[name];
    if (typeof callback !== "function") return;
    try {
      callback.call(this, value);
    } catch (error) {
      // A failing callback must not stop the stream; report it where it can be seen.
      setTimeout(() => { throw error; });
    }
  }

  async headers() {
    const headers = { Accept: "text/event-stream", ...(this.options.headers || {}) };
    let token = this.options.token;
    if (typeof token === "function") token = await token();
    if (token) headers.Authorization = "Bearer " + token;
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    return headers;
  }

  async run() {
    let delayMs = null;
    try {
      delayMs = await this.connectOnce();
    } catch (error) {
      if (this.closed) return;
      if (!error.streamed) this.failures += 1;
      this.call("onError", error);
      if (error.fatal) {
        this.closed = true;
        this.setState("closed");
        return;
      }
    }
    if (this.closed) return;
    this.setState("reconnecting");
    this.timer = setTimeout(() => this.run(), delayMs ?? this.backoff());
  }

  /** One request: read the stream until it ends. Returns a delay asked for by the
   * server (Retry-After), or null for the usual backoff. Throws on errors. */
  async connectOnce() {
    this.controller = new AbortController();
    const response = await fetch(this.requestUrl(), {
      headers: await this.headers(),
      cache: "no-store",
      credentials: this.options.credentials || "same-origin",
      signal: this.controller.signal,
    });
    if (response.status === 204) {
      // WHATWG HTML 9.2.3: 204 means "stop reconnecting"; the hub answers it when the
      // stream's channels have all ended and nothing is left to send.
      this.finish();
      return null;
    }
    if (!response.ok) {
      const error = new Error(`sse-hub answered ${response.status}: ${response.statusText}`);
      error.status = response.status;
      error.body = await response.json().catch(() => null);
      error.fatal = response.status < 500 && !RETRYABLE_CLIENT_ERRORS.has(response.status);
      if (!error.fatal) {
        const after = Number(response.headers.get("Retry-After"));
        this.failures += 1;
        this.call("onError", error);
        return after > 0 ? Math.max(after * 1000, this.backoff()) : null;
      }
      throw error;
    }
    const type = response.headers.get("Content-Type") || "";
    if (!type.startsWith("text/event-stream")) {
      const error = new Error(`not an event stream: ${type || "no Content-Type"}`);
      error.fatal = true;
      throw error;
    }
    this.failures = 0;
    this.setState("open");
    await this.read(response.body);
    return null;
  }

  requestUrl() {
    if (this.options.from !== "start" || this.lastEventId) return this.url;
    const url = new URL(this.url);
    url.searchParams.set("from", "start");
    return url.href;
  }

  async read(body) {
    const parser = new EventStreamParser(
      (event) => this.deliver(event),
      (retryMs) => { this.retryMs = retryMs; },
    );
    parser.lastEventId = this.lastEventId;
    const reader = body.getReader();
    // TextDecoder strips one leading BOM and keeps split UTF-8 sequences for the next chunk.
    const decoder = new TextDecoder("utf-8");
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
        if (this.closed) return;
      }
      parser.feed(decoder.decode());
      parser.end();
    } catch (error) {
      // A connection dropped after it opened: reconnect after the plain retry delay.
      error.streamed = true;
      throw error;
    } finally {
      reader.releaseLock();
    }
  }

  deliver(event) {
    if (this.closed) return;
    this.lastEventId = event.id;
    if (CONTROL_EVENTS.has(event.event)) {
      if (!this.control(event.event, parseInfo(event.data))) return;
    } else {
      this.call("onEvent", event);
    }
    if (this.closed) return; // a callback may close the subscription
    this.dispatchEvent(new MessageEvent(event.event, { data: event.data, lastEventId: event.id }));
    if (event.event === "end" && this.channels && this.channels.every((name) => this.ended.has(name))) {
      this.finish();
    }
  }

  /** A control event to its callback; false for an `end` already reported. */
  control(name, info) {
    if (name === "connected") {
      this.clientId = info.client_id || null;
      this.channels = Array.isArray(info.channels) ? info.channels : null;
      this.call("onOpen", info);
    } else if (name === "reset") {
      this.call("onReset", info);
    } else {
      if (this.ended.has(info.channel)) return false;
      this.ended.add(info.channel);
      this.call("onEnd", info.channel);
    }
    return true;
  }

  /** The server's retry (or retryMs) doubled per consecutive failed connect, with up
   * to 50 % jitter so clients dropped together do not all come back at once, capped. */
  backoff() {
    const base = this.retryMs * 2 ** Math.min(this.failures, 16);
    return Math.round(Math.min(this.maxRetryMs, base * (1 + Math.random() / 2)));
  }
}

/** A control event's JSON data ({raw} when it is not JSON). */
function parseInfo(data) {
  try {
    return JSON.parse(data);
  } catch (error) {
    return { raw: data };
  }
}

/** `subscribe(url, options)` is `new Subscription(url, options)`. */
export function subscribe(url, options) {
  return new Subscription(url, options);
}

globalThis.SseHub = { subscribe, Subscription, EventStreamParser };
