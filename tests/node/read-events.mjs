// Reads an sse-hub stream with the npm `eventsource` package, for tests/test_conformance.py.
//
// usage: node read-events.mjs URL COUNT NAME...
// Listens for the `connected` event and every NAME; prints one JSON line per event:
// {"event": name, "data": ..., "id": lastEventId}. Prints {"ready": true} when the stream
// is open (the hub registers the subscriber before its first bytes), exits 0 after COUNT
// events other than `connected`, exits 1 with a message on an error.
import { EventSource } from "eventsource";

const [url, countText, ...names] = process.argv.slice(2);
const count = Number(countText);
let seen = 0;

const write = (value) => process.stdout.write(JSON.stringify(value) + "\n");
const source = new EventSource(url);

source.addEventListener("connected", () => write({ ready: true }));
for (const name of new Set(names)) {
  source.addEventListener(name, (event) => {
    write({ event: event.type, data: event.data, id: event.lastEventId });
    seen += 1;
    // Close, and let node exit once stdout is drained: process.exit() could cut a
    // long line still queued for the pipe.
    if (seen >= count) source.close();
  });
}
source.addEventListener("error", (event) => {
  process.stderr.write(`eventsource error: ${event.message ?? ""} ${event.code ?? ""}\n`);
  source.close();
  process.exitCode = 1;
});
