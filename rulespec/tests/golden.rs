//! Golden diagnostics: each bad input and the exact text `scrubber check` prints for it.

use rulespec::{check, MemSource};

/// (case name, files (the first is checked), expected rendered diagnostics).
type Case = (&'static str, &'static [(&'static str, &'static str)], &'static str);

const CASES: &[Case] = &[
    (
        r#"unknown_keyword"#,
        &[(
            r#"main.rules"#,
            r#"alow from any
"#,
        )],
        r#"main.rules:1:1: error: unknown keyword 'alow'
  |
1 | alow from any
  | ^^^^ expected a statement: include, set, ports, service, allow, deny, limit, default, mode, sessions, cookie-secret, learning-window, attack-threshold, attack-quiet
  = note: did you mean 'allow'?
"#,
    ),
    (
        r#"bad_cidr"#,
        &[(
            r#"main.rules"#,
            r#"set edge = 198.18.0.300/24
"#,
        )],
        r#"main.rules:1:12: error: '198.18.0.300' is not an IP address
  |
1 | set edge = 198.18.0.300/24
  |            ^^^^^^^^^^^^ expected a prefix like 198.18.0.0/24 or 2001:2::/48
"#,
    ),
    (
        r#"host_bits_warning"#,
        &[(
            r#"main.rules"#,
            r#"set edge = 198.18.0.1/24
"#,
        )],
        r#"main.rules:1:12: warning: '198.18.0.1/24' has host bits set; it is read as 198.18.0.0/24
  |
1 | set edge = 198.18.0.1/24
  |            ^^^^^^^^^^^^^ expected the network address: 198.18.0.0/24
"#,
    ),
    (
        r#"prefix_length_out_of_range"#,
        &[(
            r#"main.rules"#,
            r#"set edge6 = 2001:2::/129
"#,
        )],
        r#"main.rules:1:22: error: prefix length '129' out of range
  |
1 | set edge6 = 2001:2::/129
  |                      ^^^ expected a prefix length from 0 to 128
"#,
    ),
    (
        r#"port_out_of_range"#,
        &[(
            r#"main.rules"#,
            r#"allow proto tcp port 70000
"#,
        )],
        r#"main.rules:1:22: error: port 70000 out of range
  |
1 | allow proto tcp port 70000
  |                      ^^^^^ expected a port from 0 to 65535
"#,
    ),
    (
        r#"port_range_backwards"#,
        &[(
            r#"main.rules"#,
            r#"ports web = 443, 90-80
"#,
        )],
        r#"main.rules:1:18: error: port range 90-80 is backwards
  |
1 | ports web = 443, 90-80
  |                  ^^^^^ expected the lower port first: 80-90
"#,
    ),
    (
        r#"bad_rate_unit"#,
        &[(
            r#"main.rules"#,
            r#"limit proto udp per-source 100ppx
"#,
        )],
        r#"main.rules:1:31: error: unknown rate unit 'ppx'
  |
1 | limit proto udp per-source 100ppx
  |                               ^^^ expected pps, kpps, Mpps, bps, kbps, Mbps, Gbps or /s
"#,
    ),
    (
        r#"unknown_set"#,
        &[(
            r#"main.rules"#,
            r#"set web = 198.18.0.0/24
deny from webb
"#,
        )],
        r#"main.rules:2:11: error: unknown prefix set 'webb'
  |
2 | deny from webb
  |           ^^^^ expected the name of a `set` defined above or in an included file, a prefix, or any
"#,
    ),
    (
        r#"wrong_kind_of_name"#,
        &[(
            r#"main.rules"#,
            r#"ports web = 80
deny from web
"#,
        )],
        r#"main.rules:2:11: error: 'web' is a port set, not a prefix set
  |
2 | deny from web
  |           ^^^ expected the name of a `set` defined above or in an included file, a prefix, or any
"#,
    ),
    (
        r#"duplicate_name"#,
        &[(
            r#"main.rules"#,
            r#"set web = 198.18.0.0/24
ports web = 80, 443
"#,
        )],
        r#"main.rules:2:7: error: 'web' is defined twice
  |
2 | ports web = 80, 443
  |       ^^^ expected a name not used before
  = note: first defined at main.rules:1:5
"#,
    ),
    (
        r#"missing_include"#,
        &[(
            r#"main.rules"#,
            r#"# top
include "common/bogons.rules"
"#,
        )],
        r#"main.rules:2:9: error: cannot read 'common/bogons.rules': no such file
  |
2 | include "common/bogons.rules"
  |         ^^^^^^^^^^^^^^^^^^^^^ expected an existing rule file (the path is relative to the including file)
"#,
    ),
    (
        r#"include_cycle"#,
        &[
            (
                r#"main.rules"#,
                r#"include "a.rules"
"#,
            ),
            (
                r#"a.rules"#,
                r#"# a
include "main.rules"
"#,
            ),
        ],
        r#"a.rules:2:9: error: include cycle: 'main.rules' is already being read
  |
2 | include "main.rules"
  |         ^^^^^^^^^^^^ expected a file that does not include itself
  = note: cycle: main.rules -> a.rules -> main.rules
"#,
    ),
    (
        r#"missing_list_file"#,
        &[(
            r#"main.rules"#,
            r#"set bad file "lists/bad.txt"
"#,
        )],
        r#"main.rules:1:14: error: cannot read list file 'lists/bad.txt': no such file
  |
1 | set bad file "lists/bad.txt"
  |              ^^^^^^^^^^^^^^^ expected a file of prefixes, one per line (the path is relative to this rule file)
"#,
    ),
    (
        r#"bad_line_in_list_file"#,
        &[
            (
                r#"main.rules"#,
                r#"set bad file "lists/bad.txt"
"#,
            ),
            (
                r#"lists/bad.txt"#,
                r#"# threats
198.18.7.0/24
198.18.8.0/33
"#,
            ),
        ],
        r#"lists/bad.txt:3:12: error: prefix length '33' out of range
  |
3 | 198.18.8.0/33
  |            ^^ expected a prefix length from 0 to 32
"#,
    ),
    (
        r#"mss_out_of_range"#,
        &[(
            r#"main.rules"#,
            r#"service web
  dst 198.18.0.10
  mss 100
end
"#,
        )],
        r#"main.rules:3:3: error: MSS 100 out of range
  |
3 |   mss 100
  |   ^^^ expected an MSS from 536 to 9000, or learn
"#,
    ),
    (
        r#"wscale_out_of_range"#,
        &[(
            r#"main.rules"#,
            r#"service web
  dst 198.18.0.10
  wscale 15
end
"#,
        )],
        r#"main.rules:3:3: error: window scale 15 out of range
  |
3 |   wscale 15
  |   ^^^^^^ expected a window scale from 0 to 14, or learn
"#,
    ),
    (
        r#"sessions_out_of_range"#,
        &[(
            r#"main.rules"#,
            r#"sessions 300M
"#,
        )],
        r#"main.rules:1:10: error: session-table capacity 300000000 out of range
  |
1 | sessions 300M
  |          ^^^^ expected a capacity from 1k to 256M
"#,
    ),
    (
        r#"missing_argument"#,
        &[(
            r#"main.rules"#,
            r#"deny from
"#,
        )],
        r#"main.rules:1:10: error: missing argument after 'from'
  |
1 | deny from
  |          ^ expected a set name, a prefix (e.g. 198.18.0.0/24) or any
"#,
    ),
    (
        r#"trailing_garbage"#,
        &[(
            r#"main.rules"#,
            r#"default deny everything
"#,
        )],
        r#"main.rules:1:14: error: unexpected 'everything' (trailing text)
  |
1 | default deny everything
  |              ^^^^^^^^^^ expected end of line (use # for comments)
"#,
    ),
    (
        r#"unterminated_string"#,
        &[(
            r#"main.rules"#,
            r#"include "common.rules
"#,
        )],
        r#"main.rules:1:9: error: unterminated string
  |
1 | include "common.rules
  |         ^^^^^^^^^^^^^ expected a closing " on the same line
"#,
    ),
    (
        r#"bad_flag_name"#,
        &[(
            r#"main.rules"#,
            r#"deny proto tcp flags syn+fyn
"#,
        )],
        r#"main.rules:1:26: error: unknown TCP flag 'fyn'
  |
1 | deny proto tcp flags syn+fyn
  |                          ^^^ expected flags joined by '+', each optionally negated with '!': fin, syn, rst, psh, ack, urg, ece, cwr
"#,
    ),
    (
        r#"shadowed_identical"#,
        &[(
            r#"main.rules"#,
            r#"deny proto udp port 19
deny proto udp port 19
"#,
        )],
        r#"main.rules:2:1: warning: rule can never match: an earlier rule matches everything it does
  |
2 | deny proto udp port 19
  | ^^^^ expected a rule that is not covered by an earlier allow, deny or limit rule
  = note: shadowed by the `deny` rule at main.rules:1:1
"#,
    ),
    (
        r#"shadowed_broader"#,
        &[(
            r#"main.rules"#,
            r#"allow to 198.18.0.0/15
allow to 198.18.1.0/24 proto tcp port 443
"#,
        )],
        r#"main.rules:2:1: warning: rule can never match: an earlier rule matches everything it does
  |
2 | allow to 198.18.1.0/24 proto tcp port 443
  | ^^^^^ expected a rule that is not covered by an earlier allow, deny or limit rule
  = note: shadowed by the `allow` rule at main.rules:1:1
"#,
    ),
    (
        r#"service_without_end"#,
        &[(
            r#"main.rules"#,
            r#"service web
  dst 198.18.0.10
allow to 198.18.0.10
"#,
        )],
        r#"main.rules:1:9: error: service 'web' has no `end`
  |
1 | service web
  |         ^^^ expected a line `end` before the next statement
"#,
    ),
    (
        r#"unknown_service_setting"#,
        &[(
            r#"main.rules"#,
            r#"service web
  dst 198.18.0.10
  synn proxy
end
"#,
        )],
        r#"main.rules:3:3: error: unknown service setting 'synn'
  |
3 |   synn proxy
  |   ^^^^ expected a service setting: dst, proto, ports, syn, mss, wscale, sack, timestamps, idle, pickup, attack-threshold, http, or end
  = note: did you mean 'syn'?
"#,
    ),
    (
        r#"limit_without_limits"#,
        &[(
            r#"main.rules"#,
            r#"limit to 198.18.0.10
"#,
        )],
        r#"main.rules:1:21: error: a `limit` rule needs at least one limit
  |
1 | limit to 198.18.0.10
  |                     ^ expected per-source RATE, per-source requests RATE, aggregate RATE, new-conns RATE or max-conns N
"#,
    ),
    (
        r#"limit_on_deny"#,
        &[(
            r#"main.rules"#,
            r#"deny from any per-source 10pps
"#,
        )],
        r#"main.rules:1:15: error: 'per-source' only applies to `limit` rules
  |
1 | deny from any per-source 10pps
  |               ^^^^^^^^^^ expected a match (from, to, proto, port, sport, flags, len, frag, icmp-type, icmpv6-type, service) or end of line
"#,
    ),
    (
        r#"setting_twice"#,
        &[(
            r#"main.rules"#,
            r#"mode enforce
mode observe
"#,
        )],
        r#"main.rules:2:1: error: 'mode' is set twice
  |
2 | mode observe
  | ^^^^ expected one 'mode' in the whole policy
  = note: first set at main.rules:1:1
"#,
    ),
    (
        r#"zero_rate"#,
        &[(
            r#"main.rules"#,
            r#"limit proto icmp aggregate 0pps
"#,
        )],
        r#"main.rules:1:28: error: a rate of 0 drops everything
  |
1 | limit proto icmp aggregate 0pps
  |                            ^^^^ expected a rate above 0 (use deny to drop everything)
"#,
    ),
    (
        r#"bad_duration_unit"#,
        &[(
            r#"main.rules"#,
            r#"learning-window 5min
"#,
        )],
        r#"main.rules:1:18: error: unknown time unit 'min'
  |
1 | learning-window 5min
  |                  ^^^ expected ms, s, m, h or d
"#,
    ),
    (
        r#"unknown_value"#,
        &[(
            r#"main.rules"#,
            r#"mode enforcing
"#,
        )],
        r#"main.rules:1:6: error: unknown value 'enforcing'
  |
1 | mode enforcing
  |      ^^^^^^^^^ expected enforce or observe
"#,
    ),
    (
        r#"tcp_setting_in_udp_service"#,
        &[(
            r#"main.rules"#,
            r#"service dns
  dst 198.18.0.53
  proto udp
  syn proxy
end
"#,
        )],
        r#"main.rules:4:3: error: TCP setting in UDP service 'dns'
  |
4 |   syn proxy
  |   ^^^ expected proto tcp, or no syn/mss/wscale/sack/timestamps/http lines
"#,
    ),
    (
        r#"several_errors_one_pass"#,
        &[(
            r#"main.rules"#,
            r#"alow from any
set x = 198.18.0.0/24

deny from y
mode observe now
"#,
        )],
        r#"main.rules:1:1: error: unknown keyword 'alow'
  |
1 | alow from any
  | ^^^^ expected a statement: include, set, ports, service, allow, deny, limit, default, mode, sessions, cookie-secret, learning-window, attack-threshold, attack-quiet
  = note: did you mean 'allow'?

main.rules:4:11: error: unknown prefix set 'y'
  |
4 | deny from y
  |           ^ expected the name of a `set` defined above or in an included file, a prefix, or any

main.rules:5:14: error: unexpected 'now' (trailing text)
  |
5 | mode observe now
  |              ^^^ expected end of line (use # for comments)
"#,
    ),
    (
        r#"http_bad_size"#,
        &[(
            r#"main.rules"#,
            r#"service web
  dst 198.18.0.10
  http max-header-bytes 8q
end
"#,
        )],
        r#"main.rules:3:25: error: '8q' is not a size
  |
3 |   http max-header-bytes 8q
  |                         ^^ expected a size in bytes, e.g. 8k (8192), 4096 or 1M
"#,
    ),
    (
        r#"http_out_of_range"#,
        &[(
            r#"main.rules"#,
            r#"service web
  dst 198.18.0.10
  http max-header-bytes 100 max-headers 0
end
"#,
        )],
        r#"main.rules:3:25: error: max-header-bytes 100 out of range
  |
3 |   http max-header-bytes 100 max-headers 0
  |                         ^^^ expected max-header-bytes from 256 to 1048576

main.rules:3:41: error: max-headers 0 out of range
  |
3 |   http max-header-bytes 100 max-headers 0
  |                                         ^ expected max-headers from 1 to 10000
"#,
    ),
    (
        r#"http_unknown_setting"#,
        &[(
            r#"main.rules"#,
            r#"service web
  dst 198.18.0.10
  http max-header-size 8k
end
"#,
        )],
        r#"main.rules:3:8: error: unknown http setting 'max-header-size'
  |
3 |   http max-header-size 8k
  |        ^^^^^^^^^^^^^^^ expected max-header-bytes, max-header-line, max-headers, methods or ban
  = note: did you mean 'max-header-line'?
"#,
    ),
    (
        r#"requests_without_http"#,
        &[(
            r#"main.rules"#,
            r#"service web
  dst 198.18.0.10
end
limit service web per-source requests 20/s
"#,
        )],
        r#"main.rules:4:19: error: service 'web' has no `http` line: its requests are not counted
  |
4 | limit service web per-source requests 20/s
  |                   ^^^^^^^^^^ expected an `http` line in service 'web' (requests are counted by its HTTP checks)
"#,
    ),
    (
        r#"ban_on_deny"#,
        &[(
            r#"main.rules"#,
            r#"deny from 198.19.0.0/16 ban 10m
"#,
        )],
        r#"main.rules:1:25: error: 'ban' only applies to `limit` rules
  |
1 | deny from 198.19.0.0/16 ban 10m
  |                         ^^^ expected a match (from, to, proto, port, sport, flags, len, frag, icmp-type, icmpv6-type, service) or end of line
  = note: a `deny` rule already drops everything it matches
"#,
    ),
    (
        r#"ban_out_of_range"#,
        &[(
            r#"main.rules"#,
            r#"service web
  dst 198.18.0.10
  http ban 30d after 0
end
"#,
        )],
        r#"main.rules:3:8: error: ban 720h out of range
  |
3 |   http ban 30d after 0
  |        ^^^ expected a ban from 1s to 7d (e.g. ban 10m)

main.rules:3:8: error: ban after 0 violations out of range
  |
3 |   http ban 30d after 0
  |        ^^^ expected after 1 to 1000 violations
"#,
    ),
];

#[test]
fn golden_diagnostics() {
    let mut failures = Vec::new();
    for (name, files, expected) in CASES {
        let mut src = MemSource::new();
        for (path, text) in *files {
            src.insert(*path, *text);
        }
        let checked = check("main.rules", &src);
        let got = checked.render();
        if got != *expected {
            failures.push(format!("--- {name}: expected\n{expected}\n--- got\n{got}"));
        }
        let warn_only = expected.lines().next().is_some_and(|l| l.contains(": warning: "));
        assert_eq!(checked.policy.is_some(), warn_only, "{name}: a policy is built exactly when there are no errors");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(CASES.len() >= 15);
}
