// The sse-hub dashboard's script (an ES module, no build step).
//
// Live: EventSource on dashboard/stream (the session cookie goes with it), one `stats`
// frame a second; rates are the differences of the counters between frames. Charts keep
// the last five minutes (WINDOW points) in uPlot (the global from uPlot.iife.min.js).
// Clients: GET stats with the admin token in the header every CLIENTS_EVERY_MS, searched
// here; "Disconnect" is DELETE clients/{id} with the same header. Every value reaches the
// DOM as text (textContent), never as HTML.

const WINDOW = 300;
const CLIENTS_EVERY_MS = 5000;
const TOKEN_KEY = "sse-hub-admin-token";
const $ = (id) => document.getElementById(id);

const token = sessionStorage.getItem(TOKEN_KEY);
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const format = new Intl.NumberFormat("en");

const series = { time: [], local: [], cluster: [], publishes: [], deliveries: [], slow: [] };
let previous = null;
let clients = [];
let totalClients = 0;

function chart(element, labels, colours) {
  const width = () => Math.max(element.clientWidth, 280);
  const plot = new uPlot(
    {
      width: width(),
      height: 200,
      series: [{}, ...labels.map((label, i) => ({ label, stroke: colours[i], width: 2 }))],
      axes: [{ stroke: "#8892a6" }, { stroke: "#8892a6" }],
      scales: { x: { time: true } },
      legend: { live: false },
    },
    [[], ...labels.map(() => [])],
    element,
  );
  new ResizeObserver(() => plot.setSize({ width: width(), height: 200 })).observe(element);
  return plot;
}

const charts = {
  connections: chart($("chart-connections"), ["this instance", "cluster"], ["#2f6fde", "#1f8a4c"]),
  rates: chart($("chart-rates"), ["publishes/s", "deliveries/s"], ["#b7791f", "#2f6fde"]),
  slow: chart($("chart-slow"), ["slow disconnects/s"], ["#c53030"]),
};

function push(name, value) {
  const values = series[name];
  values.push(value);
  if (values.length > WINDOW) values.shift();
}

function rate(frame, key, seconds) {
  if (previous === null || seconds <= 0) return 0;
  return Math.max(0, (frame[key] - previous[key]) / seconds);
}

function record(frame) {
  const now = Date.parse(frame.at) / 1000;
  const seconds = previous === null ? 0 : now - Date.parse(previous.at) / 1000;
  const publishes = rate(frame, "messages_published", seconds);
  const deliveries = rate(frame, "messages_delivered", seconds);
  push("time", now);
  push("local", frame.total_clients);
  push("cluster", frame.cluster_clients);
  push("publishes", publishes);
  push("deliveries", deliveries);
  push("slow", rate(frame, "slow_disconnects", seconds));
  charts.connections.setData([series.time, series.local, series.cluster]);
  charts.rates.setData([series.time, series.publishes, series.deliveries]);
  charts.slow.setData([series.time, series.slow]);
  return { publishes, deliveries };
}

function text(id, value) {
  $(id).textContent = typeof value === "number" ? format.format(value) : value;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const [value, numeric] of cells) {
    const td = document.createElement("td");
    if (value instanceof Node) td.append(value);
    else td.textContent = numeric ? format.format(value) : value;
    if (numeric) td.className = "num";
    tr.append(td);
  }
  return tr;
}

function show(frame) {
  const { publishes, deliveries } = record(frame);
  text("instance", frame.instance);
  text("total-clients", frame.total_clients);
  text("cluster-clients", frame.cluster_clients);
  text("max-connections", frame.max_connections);
  text("published", frame.messages_published);
  text("delivered", frame.messages_delivered);
  text("publish-rate", Math.round(publishes));
  text("delivery-rate", Math.round(deliveries));
  text("slow", frame.slow_disconnects);
  text("updated", `updated ${new Date(frame.at).toLocaleTimeString()}`);
  const reasons = Object.entries(frame.disconnects).map(([reason, n]) => `${reason} ${format.format(n)}`);
  text("disconnects", reasons.length ? `disconnects by reason: ${reasons.join(", ")}` : "no disconnects yet");
  const broker = $("broker");
  broker.textContent = `broker ${frame.broker}`;
  broker.className = `badge ${frame.broker === "ok" ? "ok" : "bad"}`;
  $("channels").replaceChildren(
    ...frame.busiest_channels.map((c) => row([[c.channel], [c.subscribers, true]])),
  );
  $("instances").replaceChildren(
    ...frame.instances.map((i) => row([[i.instance], [i.started_at], [i.total_clients, true], [i.channels, true]])),
  );
  previous = frame;
}

function matches(client, query) {
  if (!query) return true;
  const haystack = [client.id, client.ip, client.user_agent, ...client.channels].join(" ").toLowerCase();
  return haystack.includes(query);
}

function disconnectButton(id) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "danger";
  button.textContent = "Disconnect";
  button.addEventListener("click", async () => {
    button.disabled = true;
    const answer = await fetch(`clients/${encodeURIComponent(id)}`, { method: "DELETE", headers });
    if (answer.status === 401 || answer.status === 403) return signIn();
    await loadClients();
  });
  return button;
}

function showClients() {
  const query = $("search").value.trim().toLowerCase();
  const shown = clients.filter((c) => matches(c, query));
  $("clients").replaceChildren(
    ...shown.map((c) =>
      row([
        [c.id], [c.ip], [c.channels.join(", ")], [c.connected_at],
        [c.messages_sent, true], [c.bytes_sent, true], [disconnectButton(c.id)],
      ]),
    ),
  );
  const listed = clients.length < totalClients ? ` (the first ${clients.length} listed)` : "";
  text("clients-shown", `${shown.length} shown of ${format.format(totalClients)}${listed}`);
}

async function loadClients() {
  const answer = await fetch("stats?limit=1000", { headers });
  if (answer.status === 401 || answer.status === 403) return signIn();
  if (!answer.ok) return;
  const stats = await answer.json();
  clients = stats.clients;
  totalClients = stats.total_clients;
  showClients();
}

async function signIn() {
  // The cookie is HttpOnly: the server drops it, then the page asks for the token again.
  sessionStorage.removeItem(TOKEN_KEY);
  await fetch("dashboard/session", { method: "DELETE" });
  location.reload();
}

function listen() {
  const source = new EventSource("dashboard/stream");
  const live = $("live");
  source.addEventListener("open", () => {
    live.textContent = "live";
    live.className = "badge ok";
  });
  source.addEventListener("error", () => {
    live.textContent = "reconnecting";
    live.className = "badge bad";
  });
  source.addEventListener("stats", (event) => show(JSON.parse(event.data)));
}

$("search").addEventListener("input", showClients);
$("sign-out").addEventListener("click", signIn);
listen();
loadClients();
setInterval(loadClients, CLIENTS_EVERY_MS);
