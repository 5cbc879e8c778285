// Browser test of the demo page (`examples/demo/index.html`), run by `.ci/run`:
//
//   cargo build --example demo && (cd tests/browser && npm ci) && node tests/browser/demo.test.mjs
//
// It starts the built demo (`target/debug/examples/demo`, or `DEMO_BIN`) on a
// port the system picks (`ADDR=127.0.0.1:0`; the page URL is read from the
// demo's output), drives Debian's chromium (`/usr/bin/chromium`, or
// `CHROMIUM`) headless with playwright-core, and checks what a person would:
// a bad request shows the server's problem, a report's progress bar moves and
// its result appears, a canceled job shows as canceled, failing jobs show as
// failed, lost answers are retried. It saves a screenshot to
// `target/demo-page.png`, prints one line per step and `N passed, N failed`
// last, exits non-zero on any failure, always kills the demo and the browser,
// and gives up after 60 s (`BROWSER_TEST_TIMEOUT_MS`). The page follows every
// completion style: `COMPLETION=created` or `ok` runs it against those.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DEMO = process.env.DEMO_BIN || join(ROOT, "target", "debug", "examples", "demo");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCREENSHOT = join(ROOT, "target", "demo-page.png");
const FAILURE_SCREENSHOT = join(ROOT, "target", "demo-page-failure.png");
const GLOBAL_TIMEOUT_MS = Number(process.env.BROWSER_TEST_TIMEOUT_MS) || 60_000;
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const TERMINAL = ["succeeded", "failed", "canceled"];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

// --- resources, released whatever happens -----------------------------------

let demo = null;
let demoOutput = "";
let context = null;
let userDataDir = null;

// Idempotent: the watchdog and the normal end may both ask for it.
let cleaning = null;
function cleanup() {
  cleaning ??= release();
  return cleaning;
}

async function release() {
  if (context) {
    await Promise.race([context.close().catch(() => {}), sleep(5_000)]);
    context = null;
  }
  if (demo && demo.exitCode === null && demo.signalCode === null) {
    const exited = new Promise((resolve) => demo.once("exit", resolve));
    demo.kill("SIGTERM");
    await Promise.race([exited, sleep(2_000)]);
    if (demo.exitCode === null && demo.signalCode === null) demo.kill("SIGKILL");
  }
  if (userDataDir) {
    try {
      rmSync(userDataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    } catch (error) {
      console.log(`         could not remove ${userDataDir}: ${error.message}`);
    }
  }
}

// Last resort: never leave the demo running, even on an unexpected exit.
process.on("exit", () => {
  if (demo && demo.exitCode === null && demo.signalCode === null) demo.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => cleanup().finally(() => process.exit(130)));
}

// --- steps ------------------------------------------------------------------

let passed = 0;
let failed = 0;
let broken = false;

async function step(name, body) {
  if (broken) {
    failed++;
    console.log(`not run  ${name} (an earlier step failed)`);
    return;
  }
  const started = Date.now();
  try {
    await body();
    passed++;
    console.log(`ok       ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failed++;
    broken = true;
    console.log(`FAILED   ${name}: ${error && error.stack ? error.stack : error}`);
  }
}

function finish(code) {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(code);
}

const watchdog = setTimeout(async () => {
  console.log(`FAILED   the whole test took longer than ${GLOBAL_TIMEOUT_MS / 1000} s`);
  failed++;
  await Promise.race([cleanup(), sleep(5_000)]);
  finish(1);
}, GLOBAL_TIMEOUT_MS);

// Starts the demo and resolves with the page URL it prints.
function startDemo() {
  return new Promise((resolve, reject) => {
    demo = spawn(DEMO, [], {
      cwd: ROOT,
      // Port 0: the system picks a free port. `COMPLETION` (see-other, created,
      // ok) is passed on. No backtrace for the demo's deliberate panic.
      env: { ...process.env, ADDR: "127.0.0.1:0", RUST_BACKTRACE: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const timer = setTimeout(() => reject(new Error(`no page URL from the demo in 20 s:\n${demoOutput}`)), 20_000);
    const read = (chunk) => {
      demoOutput += chunk;
      const found = /Demo page: (http:\/\/\S+)/.exec(demoOutput);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    };
    demo.stdout.setEncoding("utf8").on("data", read);
    demo.stderr.setEncoding("utf8").on("data", (chunk) => (demoOutput += chunk));
    demo.once("error", (error) => reject(new Error(`cannot start ${DEMO}: ${error.message} (cargo build --example demo)`)));
    demo.once("exit", (code, signal) => reject(new Error(`the demo exited (${code ?? signal}):\n${demoOutput}`)));
  });
}

// What a job's list item shows.
function readJob(job) {
  return job.evaluate((li) => ({
    status: li.dataset.status,
    progress: li.querySelector("progress").getAttribute("value"),
    message: li.querySelector(".message").textContent,
    note: li.querySelector(".note").textContent,
    result: li.querySelector(".result").hidden ? null : li.querySelector(".result").textContent,
    cancelVisible: !li.querySelector(".cancel").hidden,
    transport: li.dataset.transport,
    events: Number(li.dataset.events || 0),
    meta: li.querySelector(".meta").textContent,
  }));
}

// Runs `action` (a click) and returns the list item of the job it started.
async function newJob(page, action) {
  const before = await page.$$eval("#jobs li", (items) => items.map((li) => li.dataset.id));
  await action();
  const found = await page.waitForFunction(
    (known) => [...document.querySelectorAll("#jobs li")].map((li) => li.dataset.id).find((id) => !known.includes(id)),
    before,
    { timeout: 5_000 },
  );
  const id = await found.jsonValue();
  assert(/^[0-9a-f-]{36}$/.test(id), `job id ${id}`);
  return page.locator(`#jobs li[data-id="${id}"]`);
}

// Waits until the job's status is `status` (and, if `withResult`, its
// result is shown), and returns what it shows.
async function waitStatus(job, status, timeoutMs, withResult = false) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const shown = await readJob(job);
    if (shown.status === status && (!withResult || shown.result !== null)) return shown;
    assert(Date.now() < deadline, `still ${JSON.stringify(shown)} after ${timeoutMs} ms, expected ${status}`);
    await sleep(100);
  }
}

async function main() {
  let url;
  let page;
  const pageErrors = [];
  let report;
  let doomed;

  await step("the demo starts and prints its page URL", async () => {
    url = await startDemo();
    assert(url.startsWith("http://127.0.0.1:"), url);
  });

  await step("headless chromium opens the page", async () => {
    userDataDir = mkdtempSync(join(tmpdir(), "tower-accepted-chromium-"));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      viewport: { width: 860, height: 700 },
      timeout: 20_000,
    });
    page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(10_000);
    page.on("pageerror", (error) => pageErrors.push(String(error)));
    const response = await page.goto(url);
    assert(response.status() === 200, `GET / answered ${response.status()}`);
    assert((await page.textContent("h1")) === "tower-accepted demo", "the page's heading");
  });

  await step("a bad page count is refused: the problem document is shown as text", async () => {
    await page.fill("#pages", "0");
    await page.click("button[type=submit]");
    await page.waitForFunction(() => document.getElementById("notice").textContent.includes("400"));
    const notice = await page.textContent("#notice");
    assert(notice.includes("`pages` must be a whole number from 1 to 100"), `notice: ${notice}`);
    assert((await page.locator("#jobs li").count()) === 0, "no job was started");
  });

  await step("a report starts; a second one starts too", async () => {
    await page.fill("#pages", "20"); // 20 × 300 ms: about 6 s
    report = await newJob(page, () => page.click("button[type=submit]"));
    await page.fill("#pages", "100"); // about 30 s: canceled long before
    doomed = await newJob(page, () => page.click("button[type=submit]"));
    assert((await page.textContent("#notice")) === "", "the notice is cleared");
    assert(/^Report, 20 pages$/.test(await report.locator(".title").textContent()), "the report's title");
  });

  await step("the report's progress bar moves, then its result is shown", async () => {
    const values = [];
    const messages = new Set();
    const deadline = Date.now() + 20_000;
    let shown;
    for (;;) {
      shown = await readJob(report);
      const value = shown.progress === null ? null : Number(shown.progress);
      if (value !== null && values.at(-1) !== value) values.push(value);
      if (shown.status === "running") messages.add(shown.message);
      if (TERMINAL.includes(shown.status)) break;
      assert(Date.now() < deadline, `the report did not end in 20 s: ${JSON.stringify(shown)}`);
      await sleep(100);
    }
    console.log(`         progress values seen: ${values.join(" → ")}`);
    assert(shown.status === "succeeded", `status ${shown.status}: ${JSON.stringify(shown)}`);
    assert(values.some((v) => v > 0 && v < 1), `no value between 0 and 1: ${values}`);
    assert(values.length >= 3 && values.every((v, i) => i === 0 || v > values[i - 1]), `not increasing: ${values}`);
    assert(values.at(-1) === 1, `the bar ends full: ${values}`);
    assert([...messages].some((m) => /^rendering page \d+ of 20$/.test(m)), `messages: ${[...messages]}`);
    assert(/^HTTP 200 application\/json/.test(shown.result), `result: ${shown.result}`);
    const body = JSON.parse(shown.result.split("\n").slice(1).join("\n"));
    assert(body.pages === 20 && body.words === 7000, `result: ${shown.result}`);
    assert(!shown.cancelVisible, "no cancel button once done");
    // Through the event stream: one request for every event, one for the result.
    assert(shown.transport === "events", `transport: ${shown.transport}`);
    assert(shown.events >= values.length - 1 && shown.events >= 3, `${shown.events} events for ${values.length} values`);
    assert(/ 2 request\(s\) · \d+ event\(s\)$/.test(shown.meta), `meta: ${shown.meta}`);
  });

  await step("the second job is canceled with its button and shown as canceled", async () => {
    const before = await waitStatus(doomed, "running", 5_000);
    assert(before.cancelVisible, "a running job has a cancel button");
    await doomed.locator(".cancel").click();
    const shown = await waitStatus(doomed, "canceled", 5_000);
    assert(/canceled/.test(shown.message) && !shown.cancelVisible, JSON.stringify(shown));
    // The server agrees (the page's own origin, the public monitor).
    const id = await doomed.getAttribute("data-id");
    const doc = await page.evaluate((id) => fetch(`/jobs/${id}`).then((r) => r.json()), id);
    assert(doc.status === "canceled", `the monitor says ${JSON.stringify(doc)}`);
  });

  await step("jobs that fail are shown as failed, with what the server said", async () => {
    const http500 = await newJob(page, () => page.click("#fail-500"));
    const panicked = await newJob(page, () => page.click("#fail-panic"));
    const a = await waitStatus(http500, "failed", 10_000, true);
    assert(/^HTTP 500 /.test(a.result) && a.result.includes("fails on purpose"), `result: ${a.result}`);
    const b = await waitStatus(panicked, "failed", 10_000, true);
    assert(/^error panicked: /.test(b.result), `result: ${b.result}`);
  });

  await step("screenshot with a running job", async () => {
    await page.fill("#pages", "60");
    const running = await newJob(page, () => page.click("button[type=submit]"));
    const deadline = Date.now() + 10_000;
    while (!(Number((await readJob(running)).progress) > 0)) {
      assert(Date.now() < deadline, "the new report shows no progress");
      await sleep(100);
    }
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`         screenshot: ${SCREENSHOT}`);
  });

  await step("without EventSource the page long-polls; network errors are retried: a lost 202 gives the same job (Idempotency-Key), a lost poll is retried", async () => {
    // As in a browser without EventSource: the page falls back to polls.
    await page.evaluate(() => { delete window.EventSource; });
    // The first POST reaches the server, but its answer is lost on the way back.
    let lostId = null;
    await page.route(
      "**/reports",
      async (route) => {
        const answer = await route.fetch();
        lostId = (await answer.json()).id;
        await route.abort("connectionreset");
      },
      { times: 1 },
    );
    // The first poll of the monitor fails too.
    await page.route(/\/jobs\/[0-9a-f-]{36}\?wait=/, (route) => route.abort("connectionreset"), { times: 1 });
    await page.fill("#pages", "8");
    const job = await newJob(page, () => page.click("button[type=submit]"));
    assert(lostId !== null && (await job.getAttribute("data-id")) === lostId, `the retried POST made a new job`);
    await job.locator(".note", { hasText: "cannot reach the server" }).waitFor({ timeout: 3_000 });
    const shown = await waitStatus(job, "succeeded", 10_000, true);
    assert(shown.note === "" && /^HTTP 200 /.test(shown.result), JSON.stringify(shown));
    assert(shown.transport === "polls" && shown.events === 0, JSON.stringify(shown));
  });

  await step("no uncaught error in the page", async () => {
    assert(pageErrors.length === 0, pageErrors.join("\n"));
  });

  if (broken && page) {
    await page.screenshot({ path: FAILURE_SCREENSHOT, fullPage: true }).catch(() => {});
    console.log(`         screenshot of the failure: ${FAILURE_SCREENSHOT}`);
    console.log(`         demo output (end):\n${demoOutput.slice(-4000)}`);
  }
}

try {
  await main();
} catch (error) {
  failed++;
  console.log(`FAILED   ${error && error.stack ? error.stack : error}`);
} finally {
  clearTimeout(watchdog);
  await cleanup();
}
finish(failed === 0 && passed > 0 ? 0 : 1);
