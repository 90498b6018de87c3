// llama-client.mjs: llama-server's own endpoints driven the way its clients
// (its web UI, llama.cpp's examples) drive them: plain fetch, JSON bodies,
// server-sent events read from the response stream and split on blank lines.
// Used by llama-e2e.sh. Usage: node llama-client.mjs BASE_URL API_KEY
// Prints one JSON line per check: {"name": ..., "ok": true|false, "detail": ...}.
const [base, key] = process.argv.slice(2);
const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` };
const results = [];
const check = (name, ok, detail) => results.push({ name, ok: !!ok, detail: ok ? undefined : detail });

async function post(path, body) {
  const r = await fetch(base + path, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
}

// the events of a streamed answer: each "data: {...}" line parsed
async function postStream(path, body) {
  const r = await fetch(base + path, { method: 'POST', headers, body: JSON.stringify(body) });
  const events = [];
  const dec = new TextDecoder();
  let buf = '';
  for await (const part of r.body) {
    buf += dec.decode(part, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      for (const line of ev.split('\n'))
        if (line.startsWith('data: ') && line !== 'data: [DONE]') events.push(JSON.parse(line.slice(6)));
    }
  }
  return { status: r.status, type: r.headers.get('content-type'), events, rest: buf };
}

const prompt = 'Once upon a time';
const whole = await post('/completion', { prompt, n_predict: 12, temperature: 0, return_tokens: true });
check('/completion answers 200', whole.status === 200, whole);
const b = whole.body;
check('/completion: content is text, tokens are ids', typeof b.content === 'string' && b.content.length > 0 &&
  Array.isArray(b.tokens) && b.tokens.length === 12 && b.tokens.every(Number.isInteger), b);
check('/completion: stop, stop_type limit, tokens_predicted 12', b.stop === true && b.stop_type === 'limit' &&
  b.tokens_predicted === 12 && b.timings.predicted_n === 12, b);
check('/completion: timings.prompt_n + cache_n = tokens_evaluated',
  b.timings.prompt_n + b.timings.cache_n === b.tokens_evaluated && b.tokens_evaluated > 1, b.timings);
check('/completion: generation_settings echo n_predict and temperature',
  b.generation_settings.n_predict === 12 && b.generation_settings.temperature === 0, b.generation_settings);

const st = await postStream('/completion', { prompt, n_predict: 12, temperature: 0, stream: true });
const last = st.events[st.events.length - 1] || {};
const parts = st.events.filter((e) => !e.stop);
check('streamed /completion: text/event-stream, no [DONE], nothing after the last event',
  st.status === 200 && /text\/event-stream/.test(st.type) && st.rest === '', st);
check('streamed /completion: one event per token with its id, then stop', parts.length === 12 &&
  parts.every((e) => e.tokens.length === 1) && last.stop === true && last.stop_type === 'limit', st.events);
check('streamed /completion: the same text as the whole answer',
  parts.map((e) => e.content).join('') === b.content, { streamed: parts.map((e) => e.content).join(''), whole: b.content });
check('streamed /completion: the same token ids as return_tokens',
  JSON.stringify(parts.map((e) => e.tokens[0])) === JSON.stringify(b.tokens), parts.map((e) => e.tokens[0]));

const tok = await post('/tokenize', { content: prompt, add_special: true });
const again = await post('/completion', { prompt: tok.body.tokens, n_predict: 12, temperature: 0 });
check('/completion of the /tokenize ids (BOS included) = of the text', again.body.content === b.content,
  { ids: again.body.content, text: b.content });
const mixed = await post('/completion', { prompt: [tok.body.tokens[0], prompt.slice(0, 4), ...(await post('/tokenize',
  { content: prompt.slice(4) })).body.tokens], n_predict: 12, temperature: 0 });
check('/completion of a mixed prompt [id, "text", ids...] answers 200', mixed.status === 200 &&
  typeof mixed.body.content === 'string', mixed);

const probs = await post('/completion', { prompt, n_predict: 4, temperature: 0, n_probs: 3 });
const cp = probs.body.completion_probabilities || [];
check('n_probs 3: completion_probabilities per token with 3 top entries, logprob <= 0',
  cp.length === 4 && cp.every((t) => Number.isInteger(t.id) && typeof t.token === 'string' &&
    Array.isArray(t.bytes) && t.logprob <= 0 && t.top_logprobs.length === 3), cp);
check('n_probs with temperature 0: the picked token is the first of top_logprobs',
  cp.every((t) => t.top_logprobs[0].id === t.id), cp);

const stopWord = b.content.trim().split(/\s+/)[1];
if (stopWord) {
  const sw = await post('/completion', { prompt, n_predict: 12, temperature: 0, stop: [stopWord] });
  check(`stop ["${stopWord}"]: stop_type word, stopping_word named, text cut before it`,
    sw.body.stop_type === 'word' && sw.body.stopping_word === stopWord && !sw.body.content.includes(stopWord) &&
    b.content.startsWith(sw.body.content), sw.body);
}

const det = await post('/detokenize', { tokens: b.tokens });
check('/detokenize of the answer\'s tokens gives its content', det.body.content === b.content, det.body);

const tmpl = await post('/apply-template', { messages: [{ role: 'user', content: 'Hello there' }] });
check('/apply-template: the rendered prompt holds the message', tmpl.status === 200 &&
  tmpl.body.prompt.includes('Hello there'), tmpl);

const props = await (await fetch(base + '/props', { headers })).json();
check('/props: total_slots, default_generation_settings.n_ctx, model_path', props.total_slots >= 1 &&
  props.default_generation_settings.n_ctx > 0 && typeof props.model_path === 'string', props);

const bad = await post('/completion', { prompt, n_predict: 4, mirostat: 2 });
check('an unsupported sampler: 400 in llama-server\'s error shape naming it', bad.status === 400 &&
  bad.body.error.code === 400 && bad.body.error.type === 'invalid_request_error' &&
  /mirostat/.test(bad.body.error.message), bad);

for (const r of results) console.log(JSON.stringify(r));
