#!/usr/bin/env node
// daemon-load.js: load generator for a running clspecd (node >= 18, no packages).
// C concurrent clients, each sending R streamed /v1/completions one after the
// other; reports per concurrency level the aggregate generated tokens/s (all
// completion tokens / wall time of the level), the mean per-request decode
// rate, and p50/p99 time to first token (request sent -> first text chunk).
//
//   node tests/bench/daemon-load.js --url http://127.0.0.1:8080 --clients 1,4,16 \
//        --requests 4 --max-tokens 64 [--prompt TEXT] [--key API_KEY] [--json]
//
// Requests use temperature 0.8 and a different seed each, ignore_eos, so every
// request generates exactly max_tokens tokens.
'use strict';

function args() {
  const a = { url: 'http://127.0.0.1:8080', clients: '1,4,16', requests: 4, 'max-tokens': 64,
    prompt: 'Once upon a time', key: '', json: false };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i++) {
    const k = v[i].replace(/^--/, '');
    if (!(k in a)) throw new Error(`unknown option ${v[i]}`);
    if (k === 'json') a.json = true; else a[k] = v[++i];
  }
  a.clients = String(a.clients).split(',').map(Number);
  a.requests = Number(a.requests);
  a['max-tokens'] = Number(a['max-tokens']);
  return a;
}

function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

async function one(a, seed) {
  const t0 = performance.now();
  const res = await fetch(`${a.url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(a.key ? { Authorization: `Bearer ${a.key}` } : {}) },
    body: JSON.stringify({ prompt: a.prompt, max_tokens: a['max-tokens'], temperature: 0.8, seed,
      ignore_eos: true, stream: true }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let ttft = null, buf = '', usage = null, timings = null;
  const dec = new TextDecoder();
  for await (const part of res.body) {
    buf += dec.decode(part, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (j.error) throw new Error(j.error.message);
      if (ttft === null && j.choices.length && j.choices[0].text) ttft = performance.now() - t0;
      if (j.usage) usage = j.usage;
      if (j.timings) timings = j.timings;
    }
  }
  return { ttft, total: performance.now() - t0, tokens: usage ? usage.completion_tokens : 0, timings };
}

async function level(a, c) {
  const results = [];
  let seed = 1000 * c;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, async () => {
    for (let r = 0; r < a.requests; r++) results.push(await one(a, seed++));
  }));
  const wall = (performance.now() - t0) / 1000;
  const tokens = results.reduce((s, r) => s + r.tokens, 0);
  const ttfts = results.map((r) => r.ttft).filter((x) => x !== null);
  const dtps = results.map((r) => (r.timings ? r.timings.decode_tokens_per_second : 0));
  return { clients: c, requests: results.length, tokens, wall_s: wall, tokens_per_s: tokens / wall,
    per_request_decode_tps: dtps.reduce((s, x) => s + x, 0) / dtps.length,
    ttft_p50_ms: pct(ttfts, 50), ttft_p99_ms: pct(ttfts, 99) };
}

(async () => {
  const a = args();
  const m = await (await fetch(`${a.url}/v1/models`, { headers: a.key ? { Authorization: `Bearer ${a.key}` } : {} })).json();
  await one({ ...a, 'max-tokens': 2 }, 1); // warm-up (kernel compilation on a fresh cache)
  const rows = [];
  for (const c of a.clients) rows.push(await level(a, c));
  if (a.json) { console.log(JSON.stringify({ model: m.data[0].id, max_tokens: a['max-tokens'], rows })); return; }
  console.log(`model ${m.data[0].id}, ${a.requests} streamed requests per client, max_tokens ${a['max-tokens']}`);
  console.log('| clients | requests | tokens | wall s | tokens/s | decode t/s per request | TTFT p50 ms | TTFT p99 ms |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.clients} | ${r.requests} | ${r.tokens} | ${r.wall_s.toFixed(2)} | ${r.tokens_per_s.toFixed(1)} | ` +
      `${r.per_request_decode_tps.toFixed(1)} | ${r.ttft_p50_ms.toFixed(1)} | ${r.ttft_p99_ms.toFixed(1)} |`);
  }
})().catch((e) => { console.error(`daemon-load: ${e.message}`); process.exit(1); });
