// webui-chromium.mjs: clspecd's chat page in headless Chromium (Debian's
// chromium, driven by playwright-core): load /, type the API key and a
// message, send it, wait for the streamed answer in the DOM and the stats
// line (tokens/s). Used by llama-e2e.sh.
// Usage: node webui-chromium.mjs CHROMIUM BASE_URL API_KEY
// Prints one JSON line per check: {"name": ..., "ok": true|false, "detail": ...}.
import { chromium } from 'playwright-core';

const [exe, base, key] = process.argv.slice(2);
const results = [];
const check = (name, ok, detail) => results.push({ name, ok: !!ok, detail: ok ? undefined : detail });

const browser = await chromium.launch({ executablePath: exe, headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // every streamed piece the page shows: the answer's text as it grows
  const r = await page.goto(base + '/', { waitUntil: 'load' });
  check('the page at / loads (200, text/html)', r.status() === 200 && /text\/html/.test(r.headers()['content-type']),
    { status: r.status(), headers: r.headers() });
  await page.click('summary'); // the settings (API key) are folded away
  await page.fill('#key', key);
  await page.dispatchEvent('#key', 'change');
  await page.fill('#input', 'Once upon a time');
  await page.click('#send');
  await page.waitForSelector('.msg.user', { timeout: 10000 });
  // the answer grows while it streams: record its lengths until it is done
  const lengths = [];
  const t0 = Date.now();
  let done = false;
  while (!done && Date.now() - t0 < 60000) {
    const s = await page.evaluate(() => {
      const a = document.querySelector('.msg.assistant, .msg.error');
      return a ? { text: a.textContent, done: a.dataset.done === '1', cls: a.className } : null;
    });
    if (s) {
      lengths.push(s.text.length);
      done = s.done || s.cls.includes('error');
    }
    await new Promise((res) => setTimeout(res, 20));
  }
  const answer = await page.evaluate(() => {
    const a = document.querySelector('.msg.assistant');
    return a ? a.textContent : null;
  });
  const stats = await page.textContent('#stats');
  const chunks = Number(await page.getAttribute('.msg.assistant', 'data-chunks'));
  check('a message sent from the page gets an answer in the DOM', typeof answer === 'string' && answer.length > 0,
    { answer, error: await page.evaluate(() => document.querySelector('.msg.error')?.textContent) });
  check('the answer arrived streamed (several chunks rendered one after the other)', chunks > 1, chunks);
  check('the stats line shows tokens/s', /tokens\/s/.test(stats), stats);
  if (process.env.EXPECT_SPEC)
    check('the stats line shows the speculation acceptance', /drafts accepted/.test(stats), stats);
  check('the page shows the model name from /v1/models', /model: /.test(await page.textContent('#status')),
    await page.textContent('#status'));
  check('no script errors on the page', errors.length === 0, errors);
  console.error(`# answer: ${JSON.stringify(answer)}; stats: ${stats}; lengths seen: ${lengths.length}`);
} finally {
  await browser.close();
}
for (const r of results) console.log(JSON.stringify(r));
