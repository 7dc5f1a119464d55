// The official `openai` npm client against a running `tandem serve`: completions and chat,
// whole and streamed, the model list, and an error. Usage:
//   node client.cjs BASE_URL EXPECTED_FILE
// EXPECTED_FILE holds {"model", "prompt", "n", "text"}, text being `tandem generate`'s
// greedy continuation of prompt. Prints "ok" and exits 0 when every check holds.
const fs = require('fs');
const { OpenAI } = require('openai');

const [base, expectedFile] = process.argv.slice(2);
const want = JSON.parse(fs.readFileSync(expectedFile, 'utf8'));
const client = new OpenAI({ baseURL: base + '/v1', apiKey: 'sk-tandem-test', maxRetries: 0, timeout: 120000 });
let failures = 0;
function check(ok, what) {
  if (!ok) {
    failures++;
    console.error('FAIL: ' + what);
  }
}

(async () => {
  const c = await client.completions.create({ model: want.model, prompt: want.prompt, max_tokens: want.n, temperature: 0 });
  check(c.choices[0].text === want.text, `completion text ${JSON.stringify(c.choices[0].text)} != generate's ${JSON.stringify(want.text)}`);
  check(c.usage.completion_tokens > 0, 'completion usage');

  const s = await client.completions.create({ model: want.model, prompt: want.prompt, max_tokens: want.n, temperature: 0, stream: true });
  let st = '';
  for await (const ch of s) st += (ch.choices[0] && ch.choices[0].text) || '';
  check(st === want.text, `streamed completion ${JSON.stringify(st)} != ${JSON.stringify(want.text)}`);

  const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Name a colour.' }];
  const chat = await client.chat.completions.create({ model: want.model, messages, max_tokens: 12, temperature: 0 });
  check(chat.choices[0].message.role === 'assistant', 'chat role');
  check(typeof chat.choices[0].message.content === 'string', 'chat content');
  const cs = await client.chat.completions.create({
    model: want.model, messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let ct = '';
  let usage = null;
  for await (const ch of cs) {
    if (ch.choices.length) ct += ch.choices[0].delta.content || '';
    if (ch.usage) usage = ch.usage;
  }
  check(ct === chat.choices[0].message.content, `streamed chat ${JSON.stringify(ct)} != ${JSON.stringify(chat.choices[0].message.content)}`);
  check(usage && usage.completion_tokens === chat.usage.completion_tokens, 'streamed chat usage');

  const models = await client.models.list();
  check(models.data.length === 1 && models.data[0].id === want.model, 'models list');

  try {
    await client.completions.create({ model: want.model, prompt: 'x', max_tokens: 0 });
    check(false, 'max_tokens 0 accepted');
  } catch (e) {
    check(e.status === 400, `max_tokens 0 gave status ${e.status}`);
  }
  const bad = new OpenAI({ baseURL: base + '/v1', apiKey: 'sk-wrong', maxRetries: 0 });
  try {
    await bad.models.list();
    check(false, 'a wrong key accepted');
  } catch (e) {
    check(e.status === 401, `a wrong key gave status ${e.status}`);
  }
  if (failures) process.exit(1);
  console.log('ok');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
