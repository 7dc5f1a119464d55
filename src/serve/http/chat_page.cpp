#include "chat_page.hpp"

namespace tandem::serve {

std::string_view chat_page_html() {
  return R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tandem chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:46rem;margin:1rem auto;padding:0 1rem;color:#222}
#log{border:1px solid #ccc;border-radius:6px;padding:.5rem;min-height:14rem;white-space:pre-wrap}
.user{color:#0b4f9c;margin:.4rem 0}.assistant{margin:.4rem 0 .8rem}.error{color:#b00020}
form{display:flex;gap:.5rem;margin-top:.5rem}#msg{flex:1;padding:.4rem}
small{color:#666}
</style></head>
<body>
<h1>tandem</h1>
<div id="log" aria-live="polite"></div>
<form id="f"><input id="msg" autocomplete="off" placeholder="Say something">
<button id="send" type="submit">Send</button></form>
<p><small>API key (if the server asks for one): <input id="key" type="password" size="24">
&nbsp;max tokens <input id="max" type="number" value="256" min="1" style="width:5rem">
&nbsp;temperature <input id="temp" type="number" value="0.7" min="0" max="2" step="0.1" style="width:4rem"></small></p>
<script>
const log = document.getElementById('log'), msgs = [];
function add(cls, text) { const d = document.createElement('div'); d.className = cls; d.textContent = text; log.appendChild(d); return d; }
document.getElementById('f').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = document.getElementById('msg'), text = input.value.trim();
  if (!text) return;
  input.value = '';
  msgs.push({role: 'user', content: text});
  add('user', 'you: ' + text);
  const out = add('assistant', '');
  const headers = {'Content-Type': 'application/json'};
  const key = document.getElementById('key').value;
  if (key) headers['Authorization'] = 'Bearer ' + key;
  let reply = '';
  try {
    const res = await fetch('/v1/chat/completions', {method: 'POST', headers,
      body: JSON.stringify({messages: msgs, stream: true, max_tokens: Number(document.getElementById('max').value) || 256,
                            temperature: Number(document.getElementById('temp').value)})});
    if (!res.ok) { const e = await res.json().catch(() => ({})); throw new Error((e.error && e.error.message) || res.statusText); }
    const reader = res.body.getReader(), dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += dec.decode(value, {stream: true});
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const line = buf.slice(0, cut).trim(); buf = buf.slice(cut + 2);
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') continue;
        const j = JSON.parse(data);
        if (j.error) throw new Error(j.error.message);
        const d = j.choices && j.choices[0] && j.choices[0].delta;
        if (d && d.content) { reply += d.content; out.textContent = reply; }
      }
    }
    msgs.push({role: 'assistant', content: reply});
  } catch (e) {
    out.className = 'error'; out.textContent = 'error: ' + e.message;
    msgs.pop();
  }
  document.body.dataset.replies = String(Number(document.body.dataset.replies || 0) + 1);
});
// ?say=TEXT&max=N&temp=X fills the form and sends at once (a link that asks a question).
const q = new URLSearchParams(location.search);
if (q.get('max')) document.getElementById('max').value = q.get('max');
if (q.get('temp')) document.getElementById('temp').value = q.get('temp');
if (q.get('say')) { document.getElementById('msg').value = q.get('say'); document.getElementById('send').click(); }
</script>
</body></html>
)HTML";
}

}  // namespace tandem::serve
