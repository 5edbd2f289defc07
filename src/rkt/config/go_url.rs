//! Go's `net/url.Parse` as far as rkt relies on it: rkt refuses a stage1 `location` that Go cannot parse as a URL
//! (rkt `rkt/config/stage1.go`), so the reader finds the same scheme and refuses the same strings, with Go's
//! reasons. Only the checks are kept; what is decoded is thrown away but for an address in brackets. The rules are those of rkt
//! v1.30.0 built from its source with Go 1.26 in GOPATH mode, and were held against that build: a host in brackets
//! must be an IPv6 address, and a port follows a host's last colon.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The characters a host (or an IPv6 zone) may hold unescaped besides letters and digits (Go's `shouldEscape` in
/// `encodeHost` mode); bytes from 0x80 up are allowed too.
const HOST_PUNCTUATION: &[u8] = b"!$&'()*+,;=:[]<>\"-_.~";

/// The characters of a user name and password besides letters and digits (Go's `validUserinfo`).
const USERINFO_PUNCTUATION: &str = "-._:~!$&'()*+,;=%@";

/// What `%` escapes a part of the URL allows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The path, the fragment, a user name or password: any well-formed escape.
    Other,
    /// A host: only `%25` and escapes of bytes from 0x80 up.
    Host,
    /// An IPv6 zone: escapes of what could be written directly, a space, or `%25`.
    Zone,
}

/// The URL's scheme in lower case (empty when it has none), or Go's reason for refusing `raw`.
pub(super) fn scheme(raw: &str) -> Result<String, String> {
    if raw.bytes().any(|b| b < b' ' || b == 0x7f) {
        return Err("net/url: invalid control character in URL".to_owned());
    }
    let (raw, fragment) = raw.split_once('#').unwrap_or((raw, ""));
    let (scheme, rest) = split_scheme(raw)?;
    let scheme = scheme.to_ascii_lowercase();
    let rest = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        &rest[..rest.len() - 1]
    } else {
        rest.split_once('?').map_or(rest, |(before, _query)| before)
    };
    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            // Opaque, as `mailto:...`: Go looks no further than the fragment.
            unescape(fragment, Part::Other)?;
            return Ok(scheme);
        }
        let segment = rest.split('/').next().unwrap_or_default();
        if segment.contains(':') {
            return Err("first path segment in URL cannot contain colon".to_owned());
        }
    }
    let mut path = rest;
    if (!scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let after = &rest[2..];
        let (authority, remainder) = after
            .find('/')
            .map_or((after, ""), |slash| after.split_at(slash));
        check_authority(authority)?;
        path = remainder;
    }
    unescape(path, Part::Other)?;
    unescape(fragment, Part::Other)?;
    Ok(scheme)
}

/// Go's `getScheme`: letters, then letters, digits, `+`, `-` or `.`, up to a colon; anything else means no scheme.
fn split_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (index, byte) in raw.bytes().enumerate() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if index > 0 => {}
            b':' if index == 0 => return Err("missing protocol scheme".to_owned()),
            b':' => return Ok((&raw[..index], &raw[index + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

fn check_authority(authority: &str) -> Result<(), String> {
    let (userinfo, host) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    check_host(host)?;
    if let Some(userinfo) = userinfo {
        if !userinfo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || USERINFO_PUNCTUATION.contains(c))
        {
            return Err("net/url: invalid userinfo".to_owned());
        }
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        unescape(user, Part::Other)?;
        unescape(password, Part::Other)?;
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    match host.rfind('[') {
        Some(open) if open > 0 => return Err("invalid IP-literal".to_owned()),
        Some(_) => return check_ip_literal(host),
        None => {}
    }
    // The port follows the last colon. Go 1.26 reads it after the first one for http and https, unless GODEBUG
    // says `urlstrictcolons=0`, which is the default of a program built without a go.mod, as rkt is.
    if let Some(colon) = host.rfind(':') {
        check_port(&host[colon..])?;
    }
    unescape(host, Part::Host).map(drop)
}

/// `[IPv6]` or `[IPv6%25zone]`, then an optional port.
fn check_ip_literal(host: &str) -> Result<(), String> {
    let close = host
        .rfind(']')
        .ok_or_else(|| "missing ']' in host".to_owned())?;
    // Only digits may follow: nothing there to unescape.
    check_port(&host[close + 1..])?;
    let inside = &host[1..close];
    let address = match inside.find("%25") {
        Some(zone) => {
            unescape(&inside[..zone], Part::Host)? + &unescape(&inside[zone..], Part::Zone)?
        }
        None => unescape(inside, Part::Host)?,
    };
    check_address(&address)
}

/// Go's `netip.ParseAddr` on the host in brackets, which must be IPv6 (an IPv4-mapped one too). Where Go explains
/// a malformed address in detail, the reason here is shorter.
fn check_address(address: &str) -> Result<(), String> {
    let refused = |why: &str| Err(format!("invalid host: ParseAddr({address:?}): {why}"));
    // Go reads the address by the first of these characters it meets.
    match address.bytes().find(|b| matches!(b, b'.' | b':' | b'%')) {
        None => refused("unable to parse IP"),
        Some(b'%') => refused("missing IPv6 address"),
        Some(b'.') if address.parse::<Ipv4Addr>().is_ok() => Err("invalid IP-literal".to_owned()),
        Some(b'.') => refused("not an IPv4 address"),
        Some(_) => {
            let (ip, zone) = address
                .split_once('%')
                .map_or((address, None), |(ip, zone)| (ip, Some(zone)));
            if zone == Some("") {
                refused("zone must be a non-empty string")
            } else if ip.parse::<Ipv6Addr>().is_ok() {
                Ok(())
            } else {
                refused("not an IPv6 address")
            }
        }
    }
}

/// Go's `validOptionalPort`: nothing, or a colon and digits.
fn check_port(port: &str) -> Result<(), String> {
    let valid = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()));
    if valid {
        Ok(())
    } else {
        Err(format!("invalid port {port:?} after host"))
    }
}

/// Go's `unescape`: every `%` starts two hex digits, and a host or zone holds only what it may; the text decoded.
fn unescape(text: &str, part: Part) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            // The bytes, not a slice of the text: a multi-byte character may follow the `%`.
            let escape = String::from_utf8_lossy(&bytes[index..(index + 3).min(bytes.len())]);
            let hex = |offset: usize| bytes.get(index + offset).copied().and_then(hex_value);
            let (Some(high), Some(low)) = (hex(1), hex(2)) else {
                return Err(format!("invalid URL escape {escape:?}"));
            };
            let value = high << 4 | low;
            let refused = match part {
                Part::Other => false,
                Part::Host => high < 8 && escape != "%25",
                Part::Zone => escape != "%25" && value != b' ' && !host_byte(value),
            };
            if refused {
                return Err(format!("invalid URL escape {escape:?}"));
            }
            decoded.push(value);
            index += 3;
            continue;
        }
        if part != Part::Other && byte < 0x80 && !host_byte(byte) {
            return Err(format!(
                "invalid character {:?} in host name",
                char::from(byte).to_string()
            ));
        }
        decoded.push(byte);
        index += 1;
    }
    Ok(String::from_utf8_lossy(&decoded).into_owned())
}

fn host_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte >= 0x80 || HOST_PUNCTUATION.contains(&byte)
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::scheme;

    #[test]
    fn urls_go_parses_give_their_scheme() {
        for (url, expected) in [
            (
                "https://github.com/rkt/rkt/releases/download/v1.30.0/stage1-kvm.aci",
                "https",
            ),
            ("HTTP://mirror.example:8080/stage1.aci", "http"),
            (
                "file:///usr/lib/rkt/stage1-images/stage1-coreos.aci",
                "file",
            ),
            ("docker://quay.io/coreos/stage1:1.30.0", "docker"),
            ("docker://a:1,b:2/image", "docker"),
            ("http://[::1]:15441/x", "http"),
            ("http://[fe80::1%25eth0]/x", "http"),
            ("http://[::ffff:10.0.0.1]/x", "http"),
            ("http://user:p%40ss@mirror.example/x", "http"),
            ("http://mirror.example/a%20b#frag", "http"),
            ("http://h%C3%A9te.example/x", "http"),
            ("http://mirror.example/x?q=%zz", "http"),
            ("mailto:%zz", "mailto"),
            ("http://[fe80::1%25a%20b]/", "http"),
            ("http://[::1]:/", "http"),
            ("http://:80/", "http"),
            ("http://a:1:2/", "http"),
            ("http://a@b@c/", "http"),
            ("http://x/?a#b#c", "http"),
            ("http:", "http"),
            ("http:///x", "http"),
            ("stage1.aci", ""),
            ("images/stage1.aci", ""),
        ] {
            assert_eq!(scheme(url).as_deref(), Ok(expected), "{url}");
        }
    }

    #[test]
    fn urls_go_refuses_are_refused_with_gos_reason() {
        for (url, reason) in [
            ("http://[::1", "missing ']' in host"),
            ("http://[::1]x/", "invalid port \"x\" after host"),
            ("http://a[::1]/", "invalid IP-literal"),
            ("http://[10.0.0.1]/", "invalid IP-literal"),
            (
                "http://[nope]/",
                "invalid host: ParseAddr(\"nope\"): unable to parse IP",
            ),
            (
                "http://[fe80::1%25]/",
                "invalid host: ParseAddr(\"fe80::1%\"): zone must be a non-empty string",
            ),
            ("http://[fe80::1%25%zz]/", "invalid URL escape \"%zz\""),
            ("http://[fe80::1%25a%2Fb]/", "invalid URL escape \"%2F\""),
            ("http://[fe80::1%eth0]/", "invalid URL escape \"%et\""),
            ("docker://x:y:z/", "invalid port \":z\" after host"),
            (
                "docker://[::1]:80:90/",
                "invalid port \":80:90\" after host",
            ),
            ("http://host:port/", "invalid port \":port\" after host"),
            ("http://ex ample/", "invalid character \" \" in host name"),
            ("http://ex%41mple/", "invalid URL escape \"%41\""),
            ("http://mirror.example/%zz", "invalid URL escape \"%zz\""),
            ("http://mirror.example/x#%4", "invalid URL escape \"%4\""),
            ("http://us{er@mirror.example/", "net/url: invalid userinfo"),
            (
                "http://mirror.example/\u{7f}",
                "net/url: invalid control character in URL",
            ),
            ("://nothing", "missing protocol scheme"),
            (
                "http://mirror.example/%\u{20ac}",
                "invalid URL escape \"%\u{fffd}\"",
            ),
            ("http://ex%\u{e9}/", "invalid URL escape \"%\u{e9}\""),
            (
                "1http://x",
                "first path segment in URL cannot contain colon",
            ),
        ] {
            assert_eq!(scheme(url), Err(reason.to_owned()), "{url}");
        }
    }
}
