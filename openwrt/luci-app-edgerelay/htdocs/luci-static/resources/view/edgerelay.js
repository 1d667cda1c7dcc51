'use strict';
'require view';
'require form';
'require fs';

// LuCI page for /etc/config/edgerelay: the daemon's status and DERP map on top, then one
// form section per UCI section. Option names are the daemon's UCI names (nested keys joined
// with underscores); the openwrt package's tests check every one against the daemon's own
// config decoder. Saving triggers the init script's reload trigger (SIGHUP).

var binary = '/usr/sbin/edgerelay';
var configFile = '/etc/config/edgerelay';

// run calls the daemon's CLI; the rpcd ACL allows exactly these command lines.
function run(subcommand) {
	return L.resolveDefault(fs.exec(binary, [ subcommand, '-c', configFile ]), null);
}

// providerOptions adds a DNS provider's options (the daemon's provider keys after prefix),
// each shown only for the provider types that use it.
function providerOptions(s, prefix, inheritsDDNS) {
	var o = s.option(form.ListValue, prefix + 'type', _('DNS provider'),
		inheritsDDNS ? _('Default: the DDNS provider.') : null);
	if (inheritsDDNS)
		o.value('', _('the DDNS provider'));
	o.value('cloudflare', 'Cloudflare');
	o.value('rfc2136', _('RFC 2136 (BIND, Knot, PowerDNS)'));
	o.value('alidns', 'Alibaba Cloud DNS');
	o.value('huaweicloud', 'Huawei Cloud DNS');
	o.value('tencentcloud', 'Tencent Cloud DNSPod');
	o.value('dnspod', _('DNSPod (the same as Tencent Cloud DNSPod)'));
	o.value('duckdns', _('DuckDNS (free name)'));
	o.value('dynv6', _('dynv6 (free name)'));

	var opt = function(widget, key, title, types, description) {
		var o = s.option(widget, prefix + key, title, description);
		types.forEach(function(t) { o.depends(prefix + 'type', t); });
		return o;
	};
	var cloud = [ 'alidns', 'huaweicloud' ];
	var token = [ 'cloudflare', 'duckdns', 'dynv6' ];
	opt(form.Value, 'api_token', _('API token'), token,
		_('Cloudflare: an API token with DNS edit rights; DuckDNS: your account token; dynv6: an HTTP token.')).password = true;
	opt(form.Value, 'api_token_file', _('API token file'), token);
	opt(form.Value, 'server', _('Server'), [ 'rfc2136' ], _('host:port of the primary.'));
	opt(form.Value, 'key_name', _('TSIG key name'), [ 'rfc2136' ]);
	o = opt(form.ListValue, 'key_alg', _('TSIG algorithm'), [ 'rfc2136' ]);
	[ 'hmac-sha256', 'hmac-sha512', 'hmac-sha384', 'hmac-sha224', 'hmac-sha1', 'hmac-md5' ].forEach(function(a) { o.value(a); });
	opt(form.Value, 'key', _('TSIG secret'), [ 'rfc2136' ]).password = true;
	opt(form.Value, 'key_file', _('TSIG secret file'), [ 'rfc2136' ]);
	opt(form.Value, 'access_key_id', _('Access key ID'), cloud);
	opt(form.Value, 'access_key_secret', _('Access key secret'), cloud).password = true;
	opt(form.Value, 'access_key_secret_file', _('Access key secret file'), cloud);
	opt(form.Value, 'region', _('Provider region'), cloud);
	var tencent = [ 'tencentcloud', 'dnspod' ];
	opt(form.Value, 'secret_id', _('SecretId'), tencent, _('A Tencent Cloud API key allowed to edit DNSPod records.'));
	opt(form.Value, 'secret_key', _('SecretKey'), tencent).password = true;
	opt(form.Value, 'secret_key_file', _('SecretKey file'), tencent);
}

function output(res, fallback) {
	if (!res)
		return fallback;
	var text = (res.code === 0) ? res.stdout : (res.stderr || res.stdout);
	return (text && text.trim()) ? text.trim() : fallback;
}

return view.extend({
	// status first: it reports a stale DERP map before derpmap records the new one as shown.
	load: function() {
		return run('status').then(function(status) {
			return run('derpmap').then(function(derpmap) {
				return run('peer-relay').then(function(grant) { return [ status, derpmap, grant ]; });
			});
		});
	},

	render: function(data) {
		var m, s, o;

		m = new form.Map('edgerelay', _('edgerelay'),
			_('A Tailscale DERP relay and STUN server, DDNS that follows this line\'s addresses, Let\'s Encrypt certificates by DNS-01, subnet-router preparation and a Tailscale Peer Relay.'));

		s = m.section(form.NamedSection, 'main', 'edgerelay', _('General'));
		o = s.option(form.Value, 'state_dir', _('State directory'),
			_('Keys, certificates, the ACME account. Keep it on flash: /var is wiped at every reboot.'));
		o.placeholder = '/etc/edgerelay';
		o = s.option(form.ListValue, 'log_level', _('Log level'));
		o.value('debug');
		o.value('info');
		o.value('warn');
		o.value('error');
		o.default = 'info';
		o = s.option(form.Value, 'metrics_listen', _('Prometheus metrics'),
			_('Address for /metrics, e.g. 127.0.0.1:9100; off when empty.'));

		s = m.section(form.NamedSection, 'relay', 'relay', _('DERP relay and STUN'));
		s.tab('general', _('General'));
		s.tab('access', _('Who may relay'),
			_('Without any check below, the relay admits the devices of the tailscaled running on this router (found by itself) and refuses everyone else; with no tailscaled it refuses every client (the status above says which). Admit your own devices with one of: tailscaled on this router, an admission URL (headscale\'s /verify), or their node keys.'));
		s.tab('mesh', _('Mesh'));
		s.tab('limits', _('Limits'));

		o = s.taboption('general', form.Flag, 'enabled', _('Enabled'));
		o.default = '1';
		o = s.taboption('general', form.Value, 'hostname', _('Host name'),
			_('The name clients connect to (needed for ACME), or the public IP.'));
		o.datatype = 'host';
		o = s.taboption('general', form.Value, 'listen', _('DERP listen address'), _('HTTPS (TCP).'));
		o.placeholder = ':12345';
		o = s.taboption('general', form.Value, 'stun_listen', _('STUN listen address'), _('UDP; off turns STUN off (empty: the default, :3478).'));
		o.placeholder = ':3478';
		o = s.taboption('general', form.Value, 'region_id', _('Region ID'), _('900-999 are meant for self-hosted regions.'));
		o.datatype = 'range(1,65535)';
		o.placeholder = '900';
		o = s.taboption('general', form.Value, 'region_code', _('Region code'));
		o.placeholder = 'home';
		o = s.taboption('general', form.Value, 'region_name', _('Region name'));
		o.placeholder = 'Home';
		o = s.taboption('general', form.ListValue, 'tls_mode', _('Certificate'),
			_('Default: acme when the ACME section is enabled, else self-signed.'));
		o.value('', _('default'));
		o.value('self-signed', _('self-signed'));
		o.value('acme', _('Let\'s Encrypt (ACME section below)'));
		o.value('manual', _('files'));
		o = s.taboption('general', form.Value, 'tls_cert_file', _('Certificate file'));
		o.depends('tls_mode', 'manual');
		o = s.taboption('general', form.Value, 'tls_key_file', _('Key file'));
		o.depends('tls_mode', 'manual');
		o = s.taboption('general', form.Value, 'ipv4', _('Published IPv4'),
			_('Address in the DERP map; default: the current one; none hides IPv4.'));
		o = s.taboption('general', form.Value, 'ipv6', _('Published IPv6'),
			_('Address in the DERP map; default: the current one; none hides IPv6.'));
		o = s.taboption('general', form.Flag, 'live_map', _('Live DERP map'),
			_('Serve this region at /derpmap.json on the DERP port, kept current as the address changes (for headscale\'s derp.urls).'));
		o.default = '1';
		o = s.taboption('general', form.Value, 'home', _('Home page'),
			_('What GET / shows: blank (default), default (a short page), or a URL to redirect to. Never the product name or version.'));
		o.placeholder = 'blank';

		o = s.taboption('access', form.Value, 'verify_clients_tailscaled_socket', _('Ask tailscaled'),
			_('Admit only node keys of your tailnet, as the local tailscaled knows them. Empty: found at the usual paths.'));
		o.placeholder = '/var/run/tailscale/tailscaled.sock';
		o = s.taboption('access', form.Value, 'verify_clients_url', _('Admission URL'),
			_('An admission service such as headscale\'s /verify endpoint.'));
		o = s.taboption('access', form.Flag, 'verify_clients_fail_open', _('Admit when the check fails'),
			_('When tailscaled is down or the URL unreachable.'));
		o = s.taboption('access', form.DynamicList, 'verify_clients_allow', _('Always admitted node keys'));
		o.placeholder = 'nodekey:…';
		o = s.taboption('access', form.Flag, 'verify_clients_open', _('Open relay'),
			_('Admit anyone who finds this relay (it then uses your line for strangers). Not with the checks above.'));

		o = s.taboption('mesh', form.Value, 'mesh_key_file', _('Mesh key file'),
			_('64 hex digits, the same on every relay of the region.'));
		o = s.taboption('mesh', form.DynamicList, 'mesh_peers', _('Mesh peers'),
			_('Host, host:port or https URL of the other relays of the region.'));
		o = s.taboption('mesh', form.DynamicList, 'mesh_pins', _('Mesh peer pins'),
			_('sha256-raw: pins of self-signed peers, in the order of the peers.'));

		o = s.taboption('limits', form.Value, 'max_clients', _('Max clients'), _('Mesh peers are not counted.'));
		o.datatype = 'uinteger';
		o.placeholder = '1000';
		o = s.taboption('limits', form.Value, 'accept_rate', _('New connections per second'));
		o.datatype = 'uinteger';
		o = s.taboption('limits', form.Value, 'client_rate', _('Bytes per second per client'), _('0: unlimited.'));
		o.datatype = 'uinteger';
		o = s.taboption('limits', form.Value, 'queue_depth', _('Queue depth per client'));
		o.datatype = 'range(1,1024)';
		o.placeholder = '32';

		s = m.section(form.NamedSection, 'ddns', 'ddns', _('Dynamic DNS'),
			_('Keeps the records below pointing at this line\'s addresses, updated as soon as they change.'));
		o = s.option(form.Flag, 'enabled', _('Enabled'));
		providerOptions(s, 'provider_', false);
		o = s.option(form.Value, 'zone', _('Zone'));
		o.datatype = 'hostname';
		o = s.option(form.Value, 'ttl', _('TTL'));
		o.datatype = 'uinteger';
		o.placeholder = '300';

		s = m.section(form.GridSection, 'record', _('DNS records'),
			_('One row per record. Address source: exactly one of interface, URL, STUN server or fixed value. With a suffix or MAC, an interface record is a LAN host\'s: the interface\'s current prefix plus the host\'s fixed identifier.'));
		s.anonymous = true;
		s.addremove = true;
		o = s.option(form.Value, 'name', _('Name'), _('Relative to the zone, or @.'));
		o = s.option(form.ListValue, 'type', _('Type'));
		o.value('AAAA');
		o.value('A');
		o = s.option(form.Value, 'interface', _('Interface'), _('A Linux device such as pppoe-wan.'));
		o = s.option(form.Value, 'url', _('Address-echo URL'));
		o = s.option(form.Value, 'value', _('Fixed address'));
		o.datatype = 'ipaddr(1)';
		o = s.option(form.Value, 'stun', _('STUN server'),
			_('host:port of a STUN server outside this network, for a public address held by a modem in front of this box; auto asks the mesh peers.'));
		o.modalonly = true;
		o = s.option(form.Value, 'suffix', _('LAN host suffix'), _('The host\'s fixed interface identifier, e.g. ::1234 (AAAA, with an interface).'));
		o.modalonly = true;
		o = s.option(form.Value, 'mac', _('LAN host MAC'), _('For a host using EUI-64 addresses (AAAA, with an interface).'));
		o.datatype = 'macaddr';
		o.modalonly = true;

		s = m.section(form.NamedSection, 'acme', 'acme', _('Let\'s Encrypt'),
			_('A certificate for the relay\'s host name by DNS-01: ports 80 and 443 can stay closed.'));
		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o = s.option(form.Value, 'email', _('Account e-mail'));
		o = s.option(form.DynamicList, 'domains', _('Domains'), _('Default: the relay\'s host name.'));
		o = s.option(form.Value, 'directory', _('ACME directory'), _('Default: Let\'s Encrypt production.'));
		o = s.option(form.Value, 'profile', _('Certificate profile'),
			_('Empty: the CA\'s default. Let\'s Encrypt: classic (90 days), tlsserver, shortlived (6 days; renewed after 3).'));
		o.value('classic');
		o.value('tlsserver');
		o.value('shortlived');
		providerOptions(s, 'dns_provider_', true);
		o = s.option(form.DynamicList, 'resolvers', _('Resolvers for the propagation check'));
		o.placeholder = '1.1.1.1:53';
		o = s.option(form.Value, 'propagation_timeout', _('Propagation timeout'));
		o.placeholder = '2m';

		s = m.section(form.NamedSection, 'subnet', 'subnet', _('Subnet router'),
			_('Forwarding, policy routes for table 52, forward/masquerade/MSS rules, and advertising the LAN routes to tailscaled. Disabling it undoes what it set up.'));
		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o = s.option(form.DynamicList, 'routes', _('Routes'), _('auto: the prefixes of the LAN interfaces; or CIDRs.'));
		o.placeholder = 'auto';
		o = s.option(form.DynamicList, 'lan_interfaces', _('LAN interfaces'));
		o.placeholder = 'br-lan';
		o = s.option(form.Value, 'tailscale_interface', _('Tailscale interface'));
		o.placeholder = 'tailscale0';
		o = s.option(form.Flag, 'snat', _('Masquerade tailnet traffic'));
		o.default = '1';
		o = s.option(form.Flag, 'mss_clamp', _('Clamp TCP MSS'));
		o.default = '1';
		o = s.option(form.ListValue, 'firewall', _('Firewall'));
		o.value('auto');
		o.value('fw4');
		o.value('nftables');
		o.value('iptables');
		o.value('none');
		o = s.option(form.Flag, 'advertise', _('Advertise routes to tailscaled'));
		o.default = '1';
		o = s.option(form.Value, 'rule_priority', _('ip rule priority'), _('Outside tailscaled\'s 5200-5299.'));
		o.datatype = 'range(1,32765)';
		o.placeholder = '1250';
		o = s.option(form.Value, 'headscale_url', _('headscale URL'), _('Approve the advertised routes on this headscale server.'));
		o = s.option(form.Value, 'headscale_api_key_file', _('headscale API key file'));

		s = m.section(form.NamedSection, 'peer_relay', 'peer_relay', _('Peer relay'),
			_('Makes this box\'s tailscaled (1.86 or newer) a Tailscale Peer Relay: sets its relay server port and static endpoints, keeps them current as the line\'s address changes and puts them back when another tool clears them, and opens the UDP port. Disabling it restores tailscaled\'s previous settings and closes the port.'));
		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o = s.option(form.Value, 'port', _('UDP port'));
		o.datatype = 'port';
		o.placeholder = '40000';
		o = s.option(form.DynamicList, 'static_endpoints', _('Static endpoints'),
			_('auto: this line\'s public addresses with the port, kept current; or ip / ip:port; none: only what tailscaled finds itself.'));
		o.placeholder = 'auto';
		o = s.option(form.Value, 'tailscaled_socket', _('tailscaled socket'), _('Empty: found at the usual paths.'));
		o = s.option(form.ListValue, 'firewall', _('Firewall'));
		o.value('auto');
		o.value('fw4');
		o.value('nftables');
		o.value('iptables');
		o.value('none');

		s = m.section(form.GridSection, 'webhook', _('Notifications'),
			_('Webhooks told when an address changes, a DNS record is written or failing, a certificate is renewed or its renewal is failing, or a part keeps failing. Without a body template the event is POSTed as JSON; see the README for Telegram, Bark, ServerChan and WeCom bodies.'));
		s.anonymous = true;
		s.addremove = true;
		o = s.option(form.Value, 'url', _('URL'), _('Often holds a token: shown in logs and status as scheme://host/… only.'));
		o.password = true;
		o = s.option(form.MultiValue, 'events', _('Events'), _('None selected: all.'));
		['address_changed', 'record_updated', 'record_failing', 'cert_renewed', 'cert_failing', 'part_failing'].forEach(function(e) { o.value(e); });
		o.optional = true;
		o = s.option(form.TextValue, 'body', _('Body template'),
			_('Placeholders such as {{title}}, {{message}}, {{record}}, {{new}}; a body starting with { is sent as JSON, any other as a form.'));
		o.placeholder = '{"chat_id": 123456789, "text": "{{title}}\\n{{message}}"}';
		o.modalonly = true;
		o = s.option(form.Value, 'timeout', _('Timeout'), _('Seconds for one request.'));
		o.datatype = 'range(1,300)';
		o.placeholder = '10';
		o.modalonly = true;

		return m.render().then(function(node) {
			var status = E('div', { 'class': 'cbi-section' }, [
				E('h3', {}, _('Status')),
				E('pre', { 'id': 'edgerelay-status' }, output(data[0], _('The daemon is not running.'))),
				E('h3', {}, _('DERP map')),
				E('p', {}, _('Paste this into the derpMap of your tailnet policy file.')),
				E('pre', { 'id': 'edgerelay-derpmap' }, output(data[1], _('No DERP map: check the relay section.'))),
				E('h3', {}, _('Peer relay grant')),
				E('p', {}, _('Paste this into the grants of your tailnet policy file so devices may use the peer relay.')),
				E('pre', { 'id': 'edgerelay-grant' }, output(data[2], ''))
			]);
			node.insertBefore(status, node.firstChild);
			return node;
		});
	}
});
