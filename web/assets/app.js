// edgerelay's page: renders /api/status every 5 s and edits /api/settings. Everything shown
// goes through textContent: nothing the daemon reports is parsed as HTML.
'use strict';
var csrf = '', snippets = {}, loaded = '';
function $(id) { return document.getElementById(id); }
function el(tag, text, cls) { var e = document.createElement(tag); if (text != null) e.textContent = text; if (cls) e.className = cls; return e; }
function rows(id, list) {
	var t = $(id); t.textContent = '';
	list.forEach(function (r) { var tr = el('tr'); tr.appendChild(el('th', r[0])); tr.appendChild(el('td', r[1] == null ? '' : String(r[1]), r[2])); t.appendChild(tr); });
	if (!list.length) t.appendChild(el('tr')).appendChild(el('td', 'none', 'small'));
}
function bytes(n) { var u = ['B', 'KB', 'MB', 'GB', 'TB'], i = 0; n = n || 0; while (n >= 1000 && i < 4) { n /= 1000; i++; } return (i ? n.toFixed(1) : n) + ' ' + u[i]; }
function when(t) { if (!t || t.indexOf('0001-') === 0) return '—'; return new Date(t).toLocaleString(); }
function post(path, body) {
	return fetch(path, { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf, 'Content-Type': 'application/json' }, body: JSON.stringify(body || {}) })
		.then(function (r) { if (r.status === 401) location.href = '/login'; return r.json().then(function (j) { j.httpStatus = r.status; return j; }); });
}

function render(d) {
	var s = d.status || {}, r = s.relay || {};
	csrf = d.csrf; snippets = d.snippets || {};
	document.body.dataset.loaded = s.config_loaded || '';
	$('version').textContent = (s.version || '') + ' · up ' + (s.uptime || '');
	$('config').textContent = 'Config: ' + (s.config || '') + ' · loaded ' + when(s.config_loaded);
	var w = $('warnings'); w.textContent = '';
	(s.warnings || []).forEach(function (x) { w.appendChild(el('div', x, 'warn')); });
	rows('parts', Object.keys(s.parts || {}).sort().map(function (k) { var v = s.parts[k]; return [k, v, v === 'running' ? 'ok' : 'bad']; }));
	rows('relay', s.relay ? [['Clients now', r.clients], ['Listen', r.listen + (r.stun_listen ? ' · STUN ' + r.stun_listen : '')],
		['Admits', r.admits], ['Accepted', r.connections_accepted], ['Refused by verification', r.clients_refused],
		['Received', bytes(r.bytes_received) + ' · ' + r.packets_received + ' packets'], ['Sent', bytes(r.bytes_sent) + ' · ' + r.packets_sent + ' packets'],
		['STUN requests', (r.stun || {}).Requests]].concat((r.mesh || []).map(function (m) { return ['Mesh ' + m.URL, m.State]; })) : [['Relay', 'off']]);
	var dr = r.packets_dropped || {};
	rows('drops', Object.keys(dr).sort().map(function (k) { return [k, dr[k]]; }));
	var v = r.verification || {};
	rows('verify', s.relay ? [['Admitted', v.Admitted], ['Refused', v.Refused], ['Admitted without a check', v.Unverified], ['Admitted on fail_open', v.FailOpen]]
		.concat(['Allow', 'Tailscaled', 'URL'].map(function (k) { var c = v[k] || {}; return [k + ' check', 'yes ' + (c.Admitted || 0) + ' · no ' + (c.Refused || 0) + ' · errors ' + (c.Errors || 0)]; })) : []);
	var a = s.acme, c = [['Relay TLS', r.tls_mode || '—']];
	if (r.cert_not_after) c.push(['Relay certificate expires', when(r.cert_not_after)]);
	if (a) c = c.concat([['ACME names', (a.domains || []).join(', ')], ['Issuer', a.issuer || '—'], ['Expires', when(a.not_after)], ['Next renewal', when(a.next_renewal)]]);
	rows('cert', c);
	var t = $('ddns'); t.textContent = '';
	var h = el('tr'); ['Record', 'Type', 'Value', 'In DNS', 'Last update', 'Source', 'Last error'].forEach(function (x) { h.appendChild(el('th', x)); }); t.appendChild(h);
	(s.ddns || []).forEach(function (x) {
		var tr = el('tr');
		[x.name, x.type, x.address, x.published, when(x.published_at), x.source].forEach(function (y) { tr.appendChild(el('td', y || '—')); });
		tr.appendChild(el('td', x.error || '—', x.error ? 'bad' : '')); t.appendChild(tr);
	});
	var ul = $('subnet'); ul.textContent = '';
	if (!s.subnet) ul.appendChild(el('li', 'off', 'small'));
	else { if (s.subnet.error) ul.appendChild(el('li', s.subnet.error, 'bad')); (s.subnet.items || []).forEach(function (x) { ul.appendChild(el('li', x)); }); }
	// The peer_relay part's status (issue 11), as its package reports it; off when absent.
	var pr = s.peer_relay;
	rows('peer', pr ? [['UDP port', pr.port + (pr.port_open ? ' · open' : '') + (pr.firewall ? ' (' + pr.firewall + ')' : '')],
		['Static endpoints', (pr.endpoints || []).join(', ') || '—'], ['In tailscaled\'s prefs', pr.in_prefs ? 'yes' : 'no'],
		['tailscaled', pr.tailscaled || '—'], ['Sessions now', pr.sessions < 0 ? 'unknown' : pr.sessions],
		['Put back after another tool', pr.reasserted], ['Checked', when(pr.checked)], ['Last error', pr.error || '—', pr.error ? 'bad' : '']] : [['Peer relay', 'off']]);
	$('snip-tailscale').textContent = snippets.tailscale || '(no map yet)';
	$('snip-headscale').textContent = snippets.headscale || '(no map yet)';
	chart(d.traffic || []);
	var log = $('log'), atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
	log.textContent = (d.logs || []).join('\n');
	if (atEnd) log.scrollTop = log.scrollHeight;
	document.body.dataset.ready = '1';
}

function chart(ss) {
	var svg = $('chart'), W = 600, H = 160, max = 1;
	svg.textContent = '';
	ss.forEach(function (x) { max = Math.max(max, x[1], x[2]); });
	$('peak').textContent = 'peak ' + bytes(max) + '/min, ' + ss.length + ' samples';
	[1, 2].forEach(function (k) { // [time, received, sent, clients]
		var pts = ss.map(function (x, i) { return (ss.length < 2 ? W : i * W / (ss.length - 1)).toFixed(1) + ',' + (H - 4 - x[k] / max * (H - 8)).toFixed(1); });
		if (pts.length === 1) pts.unshift('0,' + pts[0].split(',')[1]);
		var p = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
		p.setAttribute('points', pts.join(' ')); p.setAttribute('fill', 'none'); p.setAttribute('stroke-width', '2');
		p.setAttribute('stroke', k === 1 ? '#2a6fdb' : '#e0782a'); svg.appendChild(p);
	});
}

function refresh() {
	fetch('/api/status', { credentials: 'same-origin' }).then(function (r) {
		if (r.status === 401) { location.href = '/login'; throw new Error('logged out'); }
		return r.json();
	}).then(render).catch(function (e) { console.log(e); });
}

function loadSettings() {
	fetch('/api/settings', { credentials: 'same-origin' }).then(function (r) { return r.json(); }).then(function (v) {
		$('settings-file').textContent = v.format ? 'Editing ' + v.file + ' (' + v.format + '); saving checks the config first and reloads the daemon.' : 'The daemon runs its built-in default config: nothing to edit. Start it with -c FILE.';
		var f = $('settings-form'), sets = {}; f.textContent = '';
		$('save').disabled = !v.format;
		(v.fields || []).forEach(function (x, i) {
			var sec = x.key.indexOf('.') > 0 ? x.key.split('.')[0] : 'main';
			x.value = v.values[i];
			if (!sets[sec]) { sets[sec] = f.appendChild(el('fieldset')); sets[sec].appendChild(el('legend', sec)); }
			var row = el('div', null, 'f'), lab = el('label', x.label), inp;
			lab.htmlFor = 'set-' + x.key;
			if (x.kind === 'bool') { inp = el('input'); inp.type = 'checkbox'; inp.checked = x.value === 'true'; }
			else if (x.kind === 'choice') { inp = el('select'); x.choices.forEach(function (c) { var o = el('option', c === '' ? '(default)' : c); o.value = c; inp.appendChild(o); }); inp.value = x.value; }
			else if (x.kind === 'list') { inp = el('textarea'); inp.rows = 2; inp.value = x.value; inp.placeholder = 'one a line'; }
			else { inp = el('input'); inp.type = 'text'; inp.value = x.value; }
			inp.id = 'set-' + x.key; inp.dataset.key = x.key; inp.dataset.orig = x.kind === 'bool' ? String(inp.checked) : inp.value;
			row.appendChild(lab); row.appendChild(inp); sets[sec].appendChild(row);
		});
	});
}

function save() {
	var changes = {}, n = 0, msg = $('settings-msg');
	document.querySelectorAll('#settings-form [data-key]').forEach(function (i) {
		var v = i.type === 'checkbox' ? String(i.checked) : i.value;
		if (v !== i.dataset.orig) { changes[i.dataset.key] = v; n++; }
	});
	msg.textContent = '';
	if (!n) { msg.appendChild(el('p', 'Nothing changed.')); return; }
	var before = document.body.dataset.loaded;
	post('/api/settings', changes).then(function (j) {
		if (j.saved) {
			msg.appendChild(el('p', 'Saved; reloading…', 'ok'));
			var tries = 0, t = setInterval(function () {
				refresh();
				if (document.body.dataset.loaded !== before || ++tries > 30) {
					clearInterval(t); msg.textContent = '';
					msg.appendChild(el('p', document.body.dataset.loaded !== before ? 'Saved and reloaded.' : 'Saved; the daemon has not reloaded yet (see the log).', 'ok'));
					msg.lastChild.id = 'reloaded'; loadSettings();
				}
			}, 1000);
			return;
		}
		msg.appendChild(el('p', j.error || 'The config has problems; nothing was written:', 'bad'));
		var ul = msg.appendChild(el('ul')); ul.id = 'problems';
		(j.problems || []).forEach(function (p) { ul.appendChild(el('li', p, 'bad')); });
	});
}

function tab() {
	var set = location.hash === '#settings';
	$('dash').hidden = set; $('settings').hidden = !set;
	if (set) loadSettings();
}

document.addEventListener('DOMContentLoaded', function () {
	document.querySelectorAll('[data-copy]').forEach(function (b) {
		b.addEventListener('click', function () {
			var k = b.dataset.copy;
			post('/api/derpmap/copied').then(function (m) {
				var text = m[k] || snippets[k] || '';
				var done = function () { b.textContent = 'Copied'; b.classList.add('ok'); document.body.dataset.copied = k; };
				if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, done);
				else { var ta = el('textarea'); ta.value = text; document.body.appendChild(ta); ta.select(); document.execCommand('copy'); ta.remove(); done(); }
			});
		});
	});
	$('logout').addEventListener('click', function () { post('/logout').finally(function () { location.href = '/login'; }); });
	$('save').addEventListener('click', save);
	window.addEventListener('hashchange', tab);
	tab(); refresh(); setInterval(refresh, 5000);
});
