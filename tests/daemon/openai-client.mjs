// openai-client.mjs: the official `openai` npm client against a running
// clspecd (used by e2e.sh). Usage: node openai-client.mjs BASE_URL API_KEY
// Prints one JSON object: the texts and fields the checks compare.
import OpenAI from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
const out = {};

const models = await client.models.list();
out.models = models.data.map((m) => m.id);

const c = await client.completions.create({
  model: out.models[0], prompt: 'Once upon a time', max_tokens: 24, temperature: 0,
});
out.completion = { text: c.choices[0].text, finish: c.choices[0].finish_reason, usage: c.usage };

const s = await client.completions.create({
  model: out.models[0], prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stream: true,
});
let text = '';
let finish = null;
for await (const chunk of s) {
  if (chunk.choices.length) {
    text += chunk.choices[0].text;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
}
out.completion_stream = { text, finish };

const msgs = [{ role: 'user', content: 'Tell me a story.' }];
const cc = await client.chat.completions.create({
  model: out.models[0], messages: msgs, max_tokens: 16, temperature: 0,
});
out.chat = { text: cc.choices[0].message.content, role: cc.choices[0].message.role, usage: cc.usage };

const cs = await client.chat.completions.create({
  model: out.models[0], messages: msgs, max_tokens: 16, temperature: 0, stream: true,
  stream_options: { include_usage: true },
});
let ctext = '';
let role = null;
let usage = null;
for await (const chunk of cs) {
  if (chunk.usage) usage = chunk.usage;
  if (!chunk.choices.length) continue;
  const d = chunk.choices[0].delta;
  if (d.role) role = d.role;
  if (d.content) ctext += d.content;
}
out.chat_stream = { text: ctext, role, usage };

try {
  await client.completions.create({ model: out.models[0], prompt: 'x', max_tokens: 'many' });
  out.bad_request = 'no error';
} catch (e) {
  out.bad_request = { status: e.status, type: e.type, param: e.param };
}
console.log(JSON.stringify(out));
