# Recording stubs of OpenWrt's procd.sh and functions.sh shell API, for tests: each call is
# appended to $STUB_LOG as its name and each argument in <>. UCI values come from variables
# named UCI_<section>_<option>.
rec() {
	{
		printf '%s' "$1"
		shift
		for a in "$@"; do printf ' <%s>' "$a"; done
		echo
	} >>"$STUB_LOG"
}
config_load() { rec config_load "$@"; }
config_get() {
	rec config_get "$@"
	eval "_v=\${UCI_$2_$3-\$4}"
	eval "$1=\$_v"
}
config_get_bool() {
	rec config_get_bool "$@"
	eval "_v=\${UCI_$2_$3-\$4}"
	case "$_v" in 1 | on | true | yes | enabled) _v=1 ;; *) _v=0 ;; esac
	eval "$1=\$_v"
}
procd_open_instance() { rec procd_open_instance "$@"; }
procd_set_param() { rec procd_set_param "$@"; }
procd_append_param() { rec procd_append_param "$@"; }
procd_close_instance() { rec procd_close_instance "$@"; }
procd_add_reload_trigger() { rec procd_add_reload_trigger "$@"; }
procd_add_reload_interface_trigger() { rec procd_add_reload_interface_trigger "$@"; }
procd_add_interface_trigger() { rec procd_add_interface_trigger "$@"; }
procd_send_signal() { rec procd_send_signal "$@"; }
# The init script creates the state directory; record instead of touching the host.
mkdir() { rec mkdir "$@"; }
chmod() { rec chmod "$@"; }
