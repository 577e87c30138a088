// Drives headless Chromium against a running node's dashboard.
//
//   node dashboard.mjs check   URL OUT_DIR   the browser test (tests/tests/dashboard.rs)
//   node dashboard.mjs measure URL OUT_DIR   load time and memory (benches)
//   node dashboard.mjs locked  URL OUT_DIR PASSWORD   a node with a password
//   node dashboard.mjs cluster URL OUT_DIR COUNT      a cluster of COUNT nodes
//
// `check` loads the page, waits for the node and its queues, prints
// "READY" and waits for a line "SUBMITTED <job-id> <queue> <failed-job-id>"
// on stdin (the Rust test submits a job and a failing one then), checks
// that both show up without a reload (the failure in the failures table),
// saves OUT_DIR/dashboard.png and prints "LIVE-OK"; then waits for
// "KILLED" (the test kills the node), checks that the page says the node
// is down, saves OUT_DIR/dashboard-down.png and prints "OK". `measure`
// prints one JSON line of figures. `locked` expects the page to ask for the
// password: a wrong one is refused and asked again, the right one shows the
// node, its queues and the live feed, and survives a reload (sessionStorage);
// saves OUT_DIR/dashboard-login.png (the form after a wrong password) and
// OUT_DIR/dashboard-locked.png and prints "OK". `cluster` waits for COUNT
// member rows, all UP, prints "READY" and waits for "KILLED <node-id>
// <unix-ms>" on stdin (the test killed that member then); it waits for
// that member's row to turn red (class "down", a red background, DOWN)
// while the others stay up and the page stays live, prints "DOWN-MS <ms
// from the kill>", saves OUT_DIR/dashboard-cluster.png and prints "OK".
// Every wait is bounded; any failure exits non-zero with the reason on
// stderr.

import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [mode, url, outDir, password] = process.argv.slice(2);
if (!["check", "measure", "locked", "cluster"].includes(mode) || !url || !outDir
    || (["locked", "cluster"].includes(mode) && !password)) {
  console.error("usage: node dashboard.mjs check|measure URL OUT_DIR | locked URL OUT_DIR PASSWORD | cluster URL OUT_DIR COUNT");
  process.exit(2);
}
const WAIT_MS = 30_000;
mkdirSync(outDir, { recursive: true });

// Chromium as root in a sandboxed machine, with no background networking
// (its own connections would be refused on a closed network).
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  timeout: WAIT_MS,
});

const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error("no line on stdin within the wait")), 120_000);
  lines.once("line", (l) => { clearTimeout(t); resolve(l); });
});

try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

  if (mode === "cluster") {
    const count = Number(password);
    await page.goto(url, { waitUntil: "load", timeout: WAIT_MS });
    // Every member, up, with this node first.
    await page.waitForFunction((count) => {
      const rows = [...document.querySelectorAll("#nodes tbody tr[data-node]")];
      return rows.length === count && rows.every((r) => r.dataset.state === "up");
    }, count, { timeout: WAIT_MS });
    await page.waitForFunction(() => document.querySelector("#conn").dataset.state === "live", null, { timeout: WAIT_MS });
    const mode = await page.$eval("#mode", (m) => m.textContent);
    if (mode !== `cluster of ${count}`) throw new Error(`mode shows ${mode}`);
    console.log("READY");
    const line = await nextLine();
    const [word, dead, killedAt] = line.trim().split(/\s+/);
    if (word !== "KILLED" || !/^[0-9a-f]{40}$/.test(dead || "") || !Number(killedAt)) throw new Error(`unexpected line ${line}`);
    const row = `#nodes tbody tr[data-node="${dead}"]`;
    await page.waitForSelector(`${row}.down .badge.st-down`, { timeout: WAIT_MS });
    const downMs = Date.now() - Number(killedAt);
    // Red: the row's cells are drawn on a red background, its text red.
    const look = await page.$eval(`${row} td`, (td) => {
      const s = getComputedStyle(td);
      return { bg: s.backgroundColor, color: s.color, badge: td.parentElement.querySelector(".badge").textContent };
    });
    const rgb = (c) => (c.match(/\d+/g) || []).map(Number);
    const [br, bg, bb] = rgb(look.bg), [cr, cg, cb] = rgb(look.color);
    if (!(br > bg && br > bb) || !(cr > 2 * cg && cr > 2 * cb)) throw new Error(`the down row is not red: ${JSON.stringify(look)}`);
    if (look.badge !== "DOWN") throw new Error(`the down row's badge shows ${look.badge}`);
    // Only that member: the others stay up, and this node is live.
    const states = await page.$$eval("#nodes tbody tr[data-node]", (rows) => rows.map((r) => [r.dataset.node, r.dataset.state, r.className]));
    for (const [id, st, cls] of states) {
      if (id !== dead && (st !== "up" || cls.includes("down"))) throw new Error(`member ${id} shows ${st} (${cls}) too`);
    }
    if (states.length !== count) throw new Error(`${states.length} rows, not ${count}`);
    if (await page.isVisible("#banner")) throw new Error("the page says this node is unreachable");
    const conn = await page.$eval("#conn", (c) => c.dataset.state);
    if (conn !== "live") throw new Error(`the feed shows ${conn}`);
    const summary = await page.$eval("#summary", (s) => s.textContent);
    if (!summary.includes(`${count - 1}/${count}`) || !summary.includes("1 down")) throw new Error(`summary shows ${summary}`);
    await page.screenshot({ path: join(outDir, "dashboard-cluster.png"), fullPage: false });
    if (errors.length) throw new Error("errors in the page: " + errors.join("; "));
    console.log(`DOWN-MS ${downMs}`);
    console.log("OK");
  } else if (mode === "locked") {
    await page.goto(url, { waitUntil: "load", timeout: WAIT_MS });
    // No data without the password: the form asks for it.
    await page.waitForSelector("#login", { state: "visible", timeout: WAIT_MS });
    if (await page.$("#nodes tbody tr[data-node]")) throw new Error("node data shown before the password");
    await page.fill("#token", password + "-wrong");
    await page.click("#login button");
    await page.waitForFunction(() => /refused/.test(document.querySelector("#login-msg").textContent), null, { timeout: WAIT_MS });
    await page.waitForSelector("#login", { state: "visible", timeout: WAIT_MS });
    await page.screenshot({ path: join(outDir, "dashboard-login.png"), fullPage: false });
    await page.fill("#token", password);
    await page.click("#login button");
    await page.waitForSelector("#nodes tbody tr[data-node] .badge", { timeout: WAIT_MS });
    await page.waitForSelector("#queues tbody tr[data-queue]", { timeout: WAIT_MS });
    // The feed, read with the token, goes live.
    await page.waitForFunction(() => document.querySelector("#conn").dataset.state === "live", null, { timeout: WAIT_MS });
    if (await page.isVisible("#login")) throw new Error("the form stays after the right password");
    // The token lives in the tab's session: a reload does not ask again.
    await page.reload({ waitUntil: "load", timeout: WAIT_MS });
    await page.waitForFunction(() => document.querySelector("#conn").dataset.state === "live", null, { timeout: WAIT_MS });
    if (await page.isVisible("#login")) throw new Error("the form shows again after a reload");
    await page.screenshot({ path: join(outDir, "dashboard-locked.png"), fullPage: false });
    if (errors.some((e) => !/401/.test(e))) throw new Error("errors in the page: " + errors.join("; "));
    console.log("OK");
  } else {
    const t0 = Date.now();
    await page.goto(url, { waitUntil: "load", timeout: WAIT_MS });
    // The node's row, with its state, from /api/cluster.
    await page.waitForSelector("#nodes tbody tr[data-node] .badge", { timeout: WAIT_MS });
    const nodesAt = Date.now() - t0;
    await page.waitForSelector("#queues tbody tr[data-queue]", { timeout: WAIT_MS });
    const queuesAt = Date.now() - t0;
    // The feed is live once the first tick arrives.
    await page.waitForFunction(() => document.querySelector("#conn").dataset.state === "live", null, { timeout: WAIT_MS });
    const liveAt = Date.now() - t0;

    if (mode === "measure") {
      const cdp = await page.context().newCDPSession(page);
      await cdp.send("Performance.enable");
      // Let it live on the feed for a while, then read the heap.
      await page.waitForTimeout(5_000);
      const { metrics } = await cdp.send("Performance.getMetrics");
      const m = Object.fromEntries(metrics.map((x) => [x.name, x.value]));
      const depth = await page.$eval("#queues tbody tr[data-queue] td:nth-child(2)", (td) => td.textContent);
      console.log(JSON.stringify({
        nodes_ms: nodesAt, queues_ms: queuesAt, live_ms: liveAt,
        js_heap_used_bytes: m.JSHeapUsedSize, js_heap_total_bytes: m.JSHeapTotalSize,
        dom_nodes: m.Nodes, first_queue_depth: depth,
      }));
      await page.screenshot({ path: join(outDir, "dashboard-100k.png"), fullPage: true });
    } else {
      const nodeState = await page.$eval("#nodes tbody tr[data-node] .badge", (b) => b.textContent);
      if (nodeState !== "UP") throw new Error(`node state shows ${nodeState}`);
      console.log("READY");
      const line = await nextLine();
      const [word, id, queue, failed] = line.trim().split(/\s+/);
      if (word !== "SUBMITTED" || !id || !queue || !failed) throw new Error(`unexpected line ${line}`);
      // Without a reload: the job's events arrive on the feed, and its queue
      // appears in the table with the next tick.
      await page.waitForSelector(`#events li[data-job="${id}"]`, { timeout: WAIT_MS });
      await page.waitForSelector(`#queues tbody tr[data-queue="${queue}"]`, { timeout: WAIT_MS });
      // The job view, by id.
      await page.click(`#events li[data-job="${id}"] a`);
      await page.waitForFunction((id) => document.querySelector("#job-view").textContent.includes(id), id, { timeout: WAIT_MS });
      // Why it is where it is (/api/jobs/{id}/explain): at least one reason.
      await page.waitForSelector("#job-explain li[data-kind]", { timeout: WAIT_MS });
      // A point or more on the chart.
      await page.waitForFunction(() => document.querySelector("#chart").width > 0, null, { timeout: WAIT_MS });
      // The failure, with its class.
      await page.waitForSelector(`#failures tbody a[title="${failed}"]`, { timeout: WAIT_MS });
      await page.screenshot({ path: join(outDir, "dashboard.png"), fullPage: true });
      if (errors.length) throw new Error("errors in the page: " + errors.join("; "));
      console.log("LIVE-OK");
      const killed = await nextLine();
      if (killed.trim() !== "KILLED") throw new Error(`unexpected line ${killed}`);
      // A node that stops answering is obvious: a red banner, DOWN state.
      await page.waitForSelector("#banner:not([hidden])", { timeout: WAIT_MS });
      await page.waitForSelector("#nodes tbody tr.down .badge.st-down", { timeout: WAIT_MS });
      await page.screenshot({ path: join(outDir, "dashboard-down.png"), fullPage: false });
      console.log("OK");
    }
  }
} catch (e) {
  console.error(String(e && e.stack ? e.stack : e));
  process.exitCode = 1;
} finally {
  lines.close();
  await browser.close();
}
