// openai-tools.mjs: the official `openai` npm client with tools against a
// clspecd whose model has a Jinja chat template (used by tools-e2e.sh).
// Usage: node openai-tools.mjs BASE_URL API_KEY. Prints one JSON object.
import OpenAI from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });
const tools = [{
  type: 'function',
  function: {
    name: 'get_weather', description: 'Current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}];
const out = {};
const model = (await client.models.list()).data[0].id;

const first = await client.chat.completions.create({
  model, tools, tool_choice: 'auto', max_tokens: 12, temperature: 0,
  messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
});
out.first = { message: first.choices[0].message, finish: first.choices[0].finish_reason, usage: first.usage };

// the round trip: the assistant's call and the tool's result go back through the template
const history = [
  { role: 'user', content: 'What is the weather in Paris?' },
  { role: 'assistant', content: null, tool_calls: [{ id: 'call_abc123xyz', type: 'function',
    function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
  { role: 'tool', tool_call_id: 'call_abc123xyz', content: '{"temp": 21}' },
];
const second = await client.chat.completions.create({ model, tools, messages: history, max_tokens: 12, temperature: 0 });
out.second = { message: second.choices[0].message, finish: second.choices[0].finish_reason, usage: second.usage };

const s = await client.chat.completions.create({
  model, tools, messages: history, max_tokens: 12, temperature: 0, stream: true,
});
let text = '';
for await (const chunk of s) {
  if (chunk.choices.length && chunk.choices[0].delta.content) text += chunk.choices[0].delta.content;
}
out.second_stream = text;

// a forced call: tool_choice "required" (one call), then naming the function, streamed
const weather = [{ role: 'user', content: 'What is the weather in Paris?' }];
const req = await client.chat.completions.create({
  model, tools, tool_choice: 'required', parallel_tool_calls: false, messages: weather, max_tokens: 200, temperature: 0,
});
out.required = { message: req.choices[0].message, finish: req.choices[0].finish_reason };
const ns = await client.chat.completions.create({
  model, tools, tool_choice: { type: 'function', function: { name: 'get_weather' } }, parallel_tool_calls: false,
  messages: weather, max_tokens: 200, temperature: 0, stream: true,
});
const calls = [];
let finish = null;
for await (const chunk of ns) {
  if (!chunk.choices.length) continue;
  for (const tc of chunk.choices[0].delta.tool_calls || []) {
    calls[tc.index] ??= { name: '', arguments: '' };
    if (tc.function?.name) calls[tc.index].name += tc.function.name;
    if (tc.function?.arguments) calls[tc.index].arguments += tc.function.arguments;
  }
  finish = chunk.choices[0].finish_reason || finish;
}
out.named_stream = { calls, finish };
console.log(JSON.stringify(out));
