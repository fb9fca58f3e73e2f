//! What a trusted proxy in front of an `http-socket` says about the client.
//!
//! Behind nginx's `proxy_pass` the peer is nginx, so the client's address and scheme
//! arrive in headers nginx sets (`X-Forwarded-For`, `X-Forwarded-Proto`, ...). Those are
//! believed only from a trusted peer (the caller decides, gunicorn's
//! `forwarded_allow_ips`), and only the headers the operator names ([`Which`]). A list
//! header (`X-Forwarded-For: client, proxy`, RFC 7239 `Forwarded`) counts by its last
//! element: the one the trusted proxy itself added (`$proxy_add_x_forwarded_for`);
//! what came before is the client's to invent.

use std::net::IpAddr;

use super::head::RequestHead;

/// The forwarded headers that count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Which {
    pub forwarded: bool,
    pub x_forwarded_for: bool,
    pub x_real_ip: bool,
    pub x_forwarded_proto: bool,
    pub x_forwarded_host: bool,
    pub x_forwarded_port: bool,
    pub x_script_name: bool,
}

impl Which {
    /// What etc/nginx/example-app-keepalive.conf sets: X-Forwarded-For, -Proto.
    pub const DEFAULT: Which = Which {
        forwarded: false,
        x_forwarded_for: true,
        x_real_ip: false,
        x_forwarded_proto: true,
        x_forwarded_host: false,
        x_forwarded_port: false,
        x_script_name: false,
    };

    /// Parses a comma-separated list of header names (case-insensitive); `none` or an
    /// empty list trusts none.
    pub fn parse(list: &str) -> Result<Which, String> {
        let mut w = Which::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "none" => {}
                "forwarded" => w.forwarded = true,
                "x-forwarded-for" => w.x_forwarded_for = true,
                "x-real-ip" => w.x_real_ip = true,
                "x-forwarded-proto" => w.x_forwarded_proto = true,
                "x-forwarded-host" => w.x_forwarded_host = true,
                "x-forwarded-port" => w.x_forwarded_port = true,
                "x-script-name" => w.x_script_name = true,
                other => {
                    return Err(format!(
                        "unknown forwarded header `{other}` (known: forwarded, x-forwarded-for, \
                         x-real-ip, x-forwarded-proto, x-forwarded-host, x-forwarded-port, \
                         x-script-name)"
                    ))
                }
            }
        }
        Ok(w)
    }

    pub fn any(&self) -> bool {
        *self != Which::default()
    }
}

/// Peers whose forwarded headers are believed: addresses and networks, or any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowIps {
    any: bool,
    nets: Vec<(IpAddr, u8)>,
}

impl AllowIps {
    /// gunicorn's default: the loopback addresses.
    pub fn loopback() -> AllowIps {
        AllowIps {
            any: false,
            nets: vec![
                (IpAddr::from([127, 0, 0, 1]), 32),
                (IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), 128),
            ],
        }
    }

    /// A comma-separated list of addresses or networks (`10.0.0.0/8`), or `*`.
    pub fn parse(list: &str) -> Result<AllowIps, String> {
        let mut out = AllowIps {
            any: false,
            nets: Vec::new(),
        };
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                out.any = true;
                continue;
            }
            let (addr, bits) = match item.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (item, None),
            };
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("`{item}` is not an IP address or network"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|&b| b <= max)
                    .ok_or_else(|| format!("`{item}`: bad prefix length"))?,
                None => max,
            };
            out.nets.push((ip, bits));
        }
        Ok(out)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.any
            || self.nets.iter().any(|&(net, bits)| match (net, ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => prefix(&n.octets(), &a.octets(), bits),
                (IpAddr::V6(n), IpAddr::V6(a)) => prefix(&n.octets(), &a.octets(), bits),
                _ => false,
            })
    }
}

fn prefix(net: &[u8], addr: &[u8], bits: u8) -> bool {
    let (full, rest) = ((bits / 8) as usize, bits % 8);
    net[..full] == addr[..full]
        && (rest == 0 || (net[full] ^ addr[full]) & (0xffu8 << (8 - rest)) == 0)
}

/// What the trusted proxy said; None where it said nothing (or nothing usable).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    pub remote_addr: Option<String>,
    pub remote_port: Option<String>,
    /// `https` or `http`.
    pub scheme: Option<&'static str>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub script_name: Option<String>,
}

/// Reads the headers in `which` from `head` (the caller checked the peer is trusted).
pub fn forwarded(head: &RequestHead, which: Which) -> Forwarded {
    let mut out = Forwarded::default();
    let last_of = |v: &[u8]| -> Option<String> {
        let s = std::str::from_utf8(v).ok()?;
        let last = s.rsplit(',').next()?.trim();
        (!last.is_empty()).then(|| last.to_owned())
    };
    let (mut xff, mut real_ip, mut fwd) = (None, None, None);
    for (name, value) in &head.headers {
        // By length first: most headers are none of these.
        match name.len() {
            9 if which.forwarded && name.eq_ignore_ascii_case("forwarded") => {
                // Repeated Forwarded headers form one list: the last one counts.
                fwd = last_of(value);
            }
            9 if which.x_real_ip && name.eq_ignore_ascii_case("x-real-ip") => {
                real_ip = last_of(value);
            }
            13 if which.x_script_name && name.eq_ignore_ascii_case("x-script-name") => {
                out.script_name = std::str::from_utf8(value)
                    .ok()
                    .map(|s| s.trim().trim_end_matches('/').to_owned())
                    .filter(|s| s.starts_with('/'));
            }
            15 if which.x_forwarded_for && name.eq_ignore_ascii_case("x-forwarded-for") => {
                xff = last_of(value);
            }
            16 if which.x_forwarded_host && name.eq_ignore_ascii_case("x-forwarded-host") => {
                out.host = last_of(value);
            }
            16 if which.x_forwarded_port && name.eq_ignore_ascii_case("x-forwarded-port") => {
                out.port = last_of(value).filter(|p| p.parse::<u16>().is_ok());
            }
            17 if which.x_forwarded_proto && name.eq_ignore_ascii_case("x-forwarded-proto") => {
                out.scheme = last_of(value).and_then(|p| scheme(&p));
            }
            _ => {}
        }
    }
    // Forwarded (RFC 7239) wins over the X- headers: it is the standard one.
    if let Some(element) = fwd {
        for pair in element.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "for" => {
                    if let Some((addr, port)) = node(v) {
                        out.remote_addr = Some(addr);
                        out.remote_port = port;
                    }
                }
                "proto" => out.scheme = scheme(v).or(out.scheme),
                "host" if !v.is_empty() => out.host = Some(v.to_owned()),
                _ => {}
            }
        }
    }
    if out.remote_addr.is_none() {
        out.remote_addr = xff.or(real_ip).and_then(|a| node(&a).map(|(a, _)| a));
    }
    out
}

fn scheme(v: &str) -> Option<&'static str> {
    if v.eq_ignore_ascii_case("https") {
        Some("https")
    } else if v.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:80`,
/// `2001:db8::1`. Obfuscated and `unknown` nodes give None.
fn node(v: &str) -> Option<(String, Option<String>)> {
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some((ip.to_string(), None));
    }
    if let Some(rest) = v.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']')?;
        let ip: IpAddr = ip.parse().ok()?;
        let port = tail.strip_prefix(':').map(str::to_owned);
        return Some((ip.to_string(), port));
    }
    let (ip, port) = v.rsplit_once(':')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    port.parse::<u16>().ok()?;
    Some((ip.to_string(), Some(port.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_head, Limits, Parsed};

    fn head(headers: &str) -> RequestHead {
        let raw = format!("GET /app/x HTTP/1.1\r\nHost: h\r\n{headers}\r\n");
        match parse_head(raw.as_bytes(), &Limits::default()) {
            Ok(Parsed::Complete { head, .. }) => head,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forwarded_table() {
        let all = Which::parse(
            "forwarded, x-forwarded-for, x-real-ip, x-forwarded-proto, x-forwarded-host, \
             x-forwarded-port, x-script-name",
        )
        .expect("valid");
        let cases: &[(&str, Which, Forwarded)] = &[
            // The proxy appends: the last entry is what it saw; the first is the client's word.
            (
                "X-Forwarded-For: 6.6.6.6, 10.1.2.3\r\nX-Forwarded-Proto: https\r\n",
                Which::DEFAULT,
                Forwarded {
                    remote_addr: Some("10.1.2.3".into()),
                    scheme: Some("https"),
                    ..Forwarded::default()
                },
            ),
            // Headers not named do not count.
            (
                "X-Real-IP: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Script-Name: /x\r\n",
                Which::DEFAULT,
                Forwarded::default(),
            ),
            (
                "X-Real-IP: 10.0.0.9\r\n",
                all,
                Forwarded {
                    remote_addr: Some("10.0.0.9".into()),
                    ..Forwarded::default()
                },
            ),
            // Forwarded wins, its last element counts, quoted IPv6 with a port.
            (
                "Forwarded: for=6.6.6.6;proto=http, for=\"[2001:db8::1]:4711\";proto=https;host=shop.example\r\nX-Forwarded-For: 10.1.1.1\r\n",
                all,
                Forwarded {
                    remote_addr: Some("2001:db8::1".into()),
                    remote_port: Some("4711".into()),
                    scheme: Some("https"),
                    host: Some("shop.example".into()),
                    ..Forwarded::default()
                },
            ),
            (
                "X-Forwarded-Host: shop.example\r\nX-Forwarded-Port: 8443\r\nX-Script-Name: /app/\r\n",
                all,
                Forwarded {
                    host: Some("shop.example".into()),
                    port: Some("8443".into()),
                    script_name: Some("/app".into()),
                    ..Forwarded::default()
                },
            ),
            // Garbage is ignored, never half-believed.
            (
                "X-Forwarded-For: not-an-ip\r\nX-Forwarded-Proto: gopher\r\nX-Forwarded-Port: 99999\r\nX-Script-Name: relative\r\n",
                all,
                Forwarded::default(),
            ),
            (
                "Forwarded: for=unknown\r\nX-Forwarded-For: 10.2.2.2:5555\r\n",
                all,
                Forwarded {
                    remote_addr: Some("10.2.2.2".into()),
                    ..Forwarded::default()
                },
            ),
            ("X-Forwarded-For: 10.1.2.3\r\n", Which::default(), Forwarded::default()),
        ];
        for (headers, which, want) in cases {
            assert_eq!(
                &forwarded(&head(headers), *which),
                want,
                "{headers:?} {which:?}"
            );
        }
    }

    #[test]
    fn header_lists_parse() {
        assert_eq!(
            Which::parse("X-Forwarded-For, x-forwarded-proto"),
            Ok(Which::DEFAULT)
        );
        assert_eq!(Which::parse("none"), Ok(Which::default()));
        assert!(!Which::parse("").expect("empty").any());
        assert!(Which::parse("x-forwarded-evil").is_err());
    }

    #[test]
    fn allow_ips() {
        let lo = AllowIps::loopback();
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(lo.contains(ip("127.0.0.1")));
        assert!(lo.contains(ip("::1")));
        assert!(lo.contains(ip("::ffff:127.0.0.1")));
        assert!(!lo.contains(ip("127.0.0.2")));
        assert!(!lo.contains(ip("10.0.0.1")));
        let nets = AllowIps::parse("10.0.0.0/8, 192.168.1.7, fd00::/8").expect("valid");
        assert!(nets.contains(ip("10.200.3.4")));
        assert!(nets.contains(ip("192.168.1.7")));
        assert!(!nets.contains(ip("192.168.1.8")));
        assert!(nets.contains(ip("fd12::1")));
        assert!(!nets.contains(ip("fe80::1")));
        assert!(AllowIps::parse("*").expect("any").contains(ip("8.8.8.8")));
        assert!(AllowIps::parse("10.0.0.0/33").is_err());
        assert!(AllowIps::parse("localhost").is_err());
        let narrow = AllowIps::parse("10.0.0.0/12").expect("valid");
        assert!(narrow.contains(ip("10.15.255.255")));
        assert!(!narrow.contains(ip("10.16.0.0")));
    }
}
