// Runs a LuCI JS view outside the browser against recording stand-ins for the parts of
// LuCI's client API it uses (view, form, fs, ui, E, _, L.resolveDefault), and prints as JSON
// what it built: the form's sections and options, and the commands it ran through fs.exec.
// LuCI loads a view by wrapping its source in a function, as done here.
'use strict';
const fs = require('fs');

const src = fs.readFileSync(process.argv[2], 'utf8');
const out = { map: null, sections: [], exec: [] };

class Option {
	constructor(widget, name, title) {
		Object.assign(this, { widget, name, title, values: [], dependsOn: [] });
	}
	value(k) { this.values.push(k); }
	depends(k, v) { this.dependsOn.push({ [k]: v }); }
}

class Section {
	constructor(kind, args) {
		this.kind = kind;
		if (kind === 'NamedSection') {
			[this.name, this.type, this.title] = args;
		} else {
			[this.type, this.title] = args;
		}
		this.options = [];
		this.tabs = [];
	}
	tab(name) { this.tabs.push(name); }
	option(cls, name, title) {
		const o = new Option(cls.widget, name, title);
		this.options.push(o);
		return o;
	}
	taboption(tab, cls, name, title) {
		if (!this.tabs.includes(tab)) throw new Error(`option ${name}: tab ${tab} was not declared`);
		return this.option(cls, name, title);
	}
}

const widget = name => ({ widget: name });
const form = {
	Map: class {
		constructor(config, title) {
			out.map = config;
		}
		section(cls, ...args) {
			const s = new Section(cls.kind, args);
			out.sections.push(s);
			return s;
		}
		render() {
			const node = { children: [], firstChild: null, insertBefore(n) { this.children.unshift(n); return n; } };
			return Promise.resolve(node);
		}
	},
	NamedSection: { kind: 'NamedSection' }, TypedSection: { kind: 'TypedSection' }, GridSection: { kind: 'GridSection' },
	Value: widget('Value'), ListValue: widget('ListValue'), Flag: widget('Flag'), DynamicList: widget('DynamicList'),
	MultiValue: widget('MultiValue'), TextValue: widget('TextValue'),
};
const view = { extend: obj => obj };
const luciFs = {
	exec(cmd, args) {
		out.exec.push([cmd].concat(args || []).join(' '));
		return Promise.resolve({ code: 0, stdout: 'ok\n', stderr: '' });
	},
};
const L = { resolveDefault: (p, d) => Promise.resolve(p).catch(() => d) };
const E = (tag, attrs, children) => ({ tag, attrs, children });
const _ = s => s;

// LuCI's loader strips the 'require' directives and calls the body with the modules.
const v = new Function('L', 'view', 'form', 'fs', 'ui', 'E', '_', src)(L, view, form, luciFs, {}, E, _);
Promise.resolve(v.load())
	.then(data => v.render(data))
	.then(() => {
		const strip = o => ({ widget: o.widget, name: o.name, values: o.values, dependsOn: o.dependsOn, placeholder: o.placeholder, default: o.default, datatype: o.datatype });
		process.stdout.write(JSON.stringify({
			map: out.map,
			exec: out.exec,
			sections: out.sections.map(s => ({ kind: s.kind, name: s.name || '', type: s.type, options: s.options.map(strip) })),
		}));
	})
	.catch(e => { console.error(e && e.stack || e); process.exit(1); });
