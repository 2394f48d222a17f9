//! Finding personal data: the types, the compiled patterns, the checks of a
//! candidate against the text around it, and the choice among overlapping
//! finds, returned as spans in character offsets; and their redaction.
//!
//! Text is searched after full-width ASCII is mapped to ASCII one character for
//! one (`１３８…` matches like `138…`, offsets stay the same). Each pattern
//! proposes candidates; one counts only when it is not glued to a longer digit
//! run, a word or a decimal (`10.0.19045.2965`), when its value is valid
//! (`validate.rs`) and, for weak patterns (QQ, WeChat, passports, legacy IDs),
//! when a context word stands near it. Overlapping finds keep the longest, then
//! the more specific type.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use regex::Regex;

use super::validate::{valid_card, valid_cn_id15, valid_cn_id18};

use crate::text::fold_width;

/// A kind of personal data. The order is the tie-break between overlapping
/// finds of equal length: earlier is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiType {
    PrivateKey,
    UrlCredentials,
    ApiKey,
    Email,
    CnId,
    BankCard,
    Passport,
    Phone,
    Landline,
    Ip,
    Qq,
    Wechat,
}

impl PiiType {
    /// Every type, in priority order.
    pub const ALL: [PiiType; 12] = [
        PiiType::PrivateKey,
        PiiType::UrlCredentials,
        PiiType::ApiKey,
        PiiType::Email,
        PiiType::CnId,
        PiiType::BankCard,
        PiiType::Passport,
        PiiType::Phone,
        PiiType::Landline,
        PiiType::Ip,
        PiiType::Qq,
        PiiType::Wechat,
    ];

    /// The name used in configs, `meta.pii` and placeholders.
    pub fn name(self) -> &'static str {
        match self {
            PiiType::PrivateKey => "PRIVATE_KEY",
            PiiType::UrlCredentials => "URL_CREDENTIALS",
            PiiType::ApiKey => "API_KEY",
            PiiType::Email => "EMAIL",
            PiiType::CnId => "CN_ID",
            PiiType::BankCard => "BANK_CARD",
            PiiType::Passport => "PASSPORT",
            PiiType::Phone => "PHONE",
            PiiType::Landline => "LANDLINE",
            PiiType::Ip => "IP",
            PiiType::Qq => "QQ",
            PiiType::Wechat => "WECHAT",
        }
    }

    /// Parse a type name (case-insensitive).
    pub fn parse(s: &str) -> Option<PiiType> {
        PiiType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
    }
}

/// One find: a type and a character range of the text it was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiiSpan {
    pub ty: PiiType,
    /// Character offsets (Unicode scalar values), `start..end`.
    pub start: usize,
    pub end: usize,
}

/// A candidate in byte offsets of the normalized text.
#[derive(Debug, Clone, Copy)]
struct Cand {
    ty: PiiType,
    s: usize,
    e: usize,
}

/// The compiled detectors; build once, share across threads.
pub struct PiiDetector {
    enabled: [bool; 12],
    max_birth_year: u32,
    private_key: Regex,
    url_creds: Regex,
    url_token: Regex,
    api_key: Regex,
    email: Regex,
    cn_id: Regex,
    mobile: Regex,
    nanp: Regex,
    landline: Regex,
    bank: Regex,
    ipv4: Regex,
    ipv6: Regex,
    passport: Regex,
    qq: Regex,
    wechat: Regex,
    wxid: Regex,
}

fn re(p: &str) -> Regex {
    Regex::new(p).expect("built-in PII pattern compiles")
}

/// The current year from the system clock (birth dates after it are not IDs).
fn current_year() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (1970 + secs / 31_556_952).max(2024) as u32
}

impl PiiDetector {
    /// Compile the detectors for `types` (all when empty).
    pub fn new(types: &[PiiType]) -> PiiDetector {
        let mut enabled = [types.is_empty(); 12];
        for t in types {
            enabled[*t as usize] = true;
        }
        PiiDetector {
            enabled,
            max_birth_year: current_year(),
            private_key: re(
                r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
            ),
            url_creds: re(
                r"[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s/?#@:]*:[^\s/?#@]+@[A-Za-z0-9.-]+(?::[0-9]{1,5})?",
            ),
            url_token: re(
                r"[?&](?i-u:access_token|refresh_token|id_token|auth_token|token|api_key|apikey|api-key|key|secret|client_secret|sig|signature)=([^&\s#'<>]{16,})",
            ),
            api_key: re(
                r"AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,}|sk-[A-Za-z0-9_-]{20,}|xox[baprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}",
            ),
            email: re(
                r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}",
            ),
            cn_id: re(r"[0-9]{17}[0-9Xx]|[0-9]{15}"),
            mobile: re(
                r"(?:(?:\+|00)86[ -]?|86[ -]?|\(\+?86\)[ -]?)?1[3-9][0-9](?:[0-9]{8}|-[0-9]{4}-[0-9]{4}| [0-9]{4} [0-9]{4})",
            ),
            nanp: re(
                r"(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}|\+1[2-9][0-9]{2}[2-9][0-9]{6}",
            ),
            landline: re(
                r"(?:\((?:010|02[0-9]|0[3-9][0-9]{2})\) ?|(?:010|02[0-9]|0[3-9][0-9]{2})[ -])[2-9][0-9]{6,7}",
            ),
            bank: re(
                r"[0-9]{4}(?:[ -][0-9]{4}){3}(?:[ -][0-9]{1,3})?|3[47][0-9]{2}[ -][0-9]{6}[ -][0-9]{5}|[0-9]{15,19}",
            ),
            ipv4: re(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"),
            ipv6: re(r"[0-9A-Fa-f]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*"),
            passport: re(r"[EG][0-9]{8}|E[A-Z][0-9]{7}|[0-9]{9}|[A-Z][0-9]{8}"),
            qq: re(r"[1-9][0-9]{4,10}"),
            wechat: re(
                r"(?:微信号?|[vV]信|薇信|(?i-u:wechat(?: ?id)?|weixin|wx|vx))((?:\s|号|id|ID|是|为|:|=){0,4})([A-Za-z][A-Za-z0-9_-]{5,19})",
            ),
            wxid: re(r"wxid_[a-z0-9]{6,20}"),
        }
    }

    fn on(&self, t: PiiType) -> bool {
        self.enabled[t as usize]
    }

    /// Every find in `text`, non-overlapping, sorted by start, in character offsets.
    pub fn detect(&self, text: &str) -> Vec<PiiSpan> {
        let norm = normalize(text);
        let t: &str = norm.as_deref().unwrap_or(text);
        let mut c: Vec<Cand> = Vec::new();
        let b = t.as_bytes();
        let has_digit = b.iter().any(u8::is_ascii_digit);
        let has_at = b.contains(&b'@');

        if self.on(PiiType::PrivateKey) && t.contains("PRIVATE KEY-----") {
            for m in self.private_key.find_iter(t) {
                c.push(Cand {
                    ty: PiiType::PrivateKey,
                    s: m.start(),
                    e: m.end(),
                });
            }
        }
        if self.on(PiiType::UrlCredentials) && t.contains("://") && has_at {
            for m in self.url_creds.find_iter(t) {
                c.push(Cand {
                    ty: PiiType::UrlCredentials,
                    s: m.start(),
                    e: m.end(),
                });
            }
        }
        if self.on(PiiType::UrlCredentials) && b.contains(&b'=') {
            for cap in self.url_token.captures_iter(t) {
                let g = cap.get(1).expect("group 1");
                c.push(Cand {
                    ty: PiiType::UrlCredentials,
                    s: g.start(),
                    e: g.end(),
                });
            }
        }
        if self.on(PiiType::ApiKey) {
            scan(&self.api_key, t, |s, e| {
                let ok = !prev(t, s).is_some_and(|p| p.is_ascii_alphanumeric() || p == '_' || p == '-')
                    && !next(t, e).is_some_and(|n| n.is_ascii_alphanumeric());
                ok.then_some((s, e))
            })
            .into_iter()
            .for_each(|(s, e)| {
                c.push(Cand {
                    ty: PiiType::ApiKey,
                    s,
                    e,
                })
            });
        }
        if self.on(PiiType::Email) && has_at {
            for m in self.email.find_iter(t) {
                if let Some((s, e)) = check_email(t, m.start(), m.end()) {
                    c.push(Cand {
                        ty: PiiType::Email,
                        s,
                        e,
                    });
                }
            }
        }
        if has_digit {
            self.digits(t, &mut c);
        }
        if self.on(PiiType::Ip) && b.contains(&b':') {
            for m in self.ipv6.find_iter(t) {
                if let Some((s, e)) = check_ipv6(t, m.start(), m.end()) {
                    c.push(Cand {
                        ty: PiiType::Ip,
                        s,
                        e,
                    });
                }
            }
        }
        if self.on(PiiType::Wechat) {
            self.wechat_ids(t, &mut c);
        }
        let kept = resolve(c);
        to_chars(t, &kept)
    }

    fn digits(&self, t: &str, c: &mut Vec<Cand>) {
        let mut push = |ty: PiiType, v: Vec<(usize, usize)>| {
            c.extend(v.into_iter().map(|(s, e)| Cand { ty, s, e }));
        };
        if self.on(PiiType::CnId) || self.on(PiiType::BankCard) {
            let ids = scan(&self.cn_id, t, |s, e| {
                if !digit_bounded(t, s, e) {
                    return None;
                }
                let v = &t[s..e];
                let ok = if v.len() == 18 {
                    valid_cn_id18(v, self.max_birth_year)
                } else {
                    valid_cn_id15(v)
                        && has_context(t, s, e, 20, &["身份证", "证件", "id card", "id no", "id number"])
                };
                ok.then_some((s, e))
            });
            if self.on(PiiType::CnId) {
                push(PiiType::CnId, ids);
            }
        }
        if self.on(PiiType::BankCard) {
            let cards = scan(&self.bank, t, |s, e| {
                // A grouped card may have swallowed a short trailing group: try without it.
                let mut ends = vec![e];
                if let Some(cut) = t[s..e].rfind([' ', '-']) {
                    if e - (s + cut) <= 4 && t[s..e].matches([' ', '-']).count() == 4 {
                        ends.push(s + cut);
                    }
                }
                ends.into_iter()
                    .find(|&end| digit_bounded(t, s, end) && valid_card(&t[s..end], self.max_birth_year))
                    .map(|end| (s, end))
            });
            push(PiiType::BankCard, cards);
        }
        if self.on(PiiType::Phone) {
            let mobiles = scan(&self.mobile, t, |s, e| {
                let plus = t[s..].starts_with('+') || t[s..].starts_with('(');
                let ok_prev = plus || prev(t, s) != Some('+');
                (ok_prev && digit_bounded(t, s, e)).then_some((s, e))
            });
            push(PiiType::Phone, mobiles);
            let nanp = scan(&self.nanp, t, |s, e| {
                let glued_before =
                    prev(t, s).is_some_and(|p| p.is_ascii_alphanumeric() || matches!(p, '-' | '.' | '_'));
                let glued_after = next(t, e).is_some_and(|n| n.is_ascii_alphanumeric() || n == '-');
                let decimal = next(t, e) == Some('.') && next2(t, e).is_some_and(|n| n.is_ascii_digit());
                (!glued_before && !glued_after && !decimal).then_some((s, e))
            });
            push(PiiType::Phone, nanp);
        }
        if self.on(PiiType::Landline) {
            let v = scan(&self.landline, t, |s, e| digit_bounded(t, s, e).then_some((s, e)));
            push(PiiType::Landline, v);
        }
        if self.on(PiiType::Ip) && t.as_bytes().contains(&b'.') {
            let v = scan(&self.ipv4, t, |s, e| check_ipv4(t, s, e).then_some((s, e)));
            push(PiiType::Ip, v);
        }
        if self.on(PiiType::Passport) {
            let v = scan(&self.passport, t, |s, e| {
                let ok = !prev(t, s).is_some_and(|p| p.is_ascii_alphanumeric() || p == '_')
                    && !next(t, e).is_some_and(|n| n.is_ascii_alphanumeric() || n == '_')
                    && has_context(t, s, e, 20, &["护照", "passport"]);
                ok.then_some((s, e))
            });
            push(PiiType::Passport, v);
        }
        if self.on(PiiType::Qq) {
            let v = scan(&self.qq, t, |s, e| {
                let ok = !prev(t, s).is_some_and(|p| p.is_ascii_digit())
                    && digit_bounded_after(t, e)
                    && context_before(t, s, 10, &["qq", "扣扣", "企鹅号"]);
                ok.then_some((s, e))
            });
            push(PiiType::Qq, v);
        }
    }

    fn wechat_ids(&self, t: &str, c: &mut Vec<Cand>) {
        for cap in self.wechat.captures_iter(t) {
            let ctx = cap.get(0).expect("group 0");
            let sep = cap.get(1).map_or("", |g| g.as_str());
            let id = cap.get(2).expect("group 2");
            let ascii_ctx = t.as_bytes()[ctx.start()].is_ascii();
            if ascii_ctx
                && (sep.is_empty() || prev(t, ctx.start()).is_some_and(|p| p.is_ascii_alphanumeric()))
            {
                continue;
            }
            if next(t, id.end()).is_some_and(|n| n.is_ascii_alphanumeric() || n == '_' || n == '-') {
                continue;
            }
            let explicit = sep.contains([':', '是', '为', '=']);
            let v = id.as_str();
            if !explicit && !v.contains(|ch: char| ch.is_ascii_digit() || ch == '_' || ch == '-') {
                continue;
            }
            c.push(Cand {
                ty: PiiType::Wechat,
                s: id.start(),
                e: id.end(),
            });
        }
        for m in self.wxid.find_iter(t) {
            if !prev(t, m.start()).is_some_and(|p| p.is_ascii_alphanumeric())
                && !next(t, m.end()).is_some_and(|n| n.is_ascii_alphanumeric() || n == '_')
            {
                c.push(Cand {
                    ty: PiiType::Wechat,
                    s: m.start(),
                    e: m.end(),
                });
            }
        }
    }
}

/// Find candidates of `re` in `t`; `accept` validates one (and may shrink it).
/// A rejected candidate does not hide one that starts at the next character.
fn scan(
    re: &Regex,
    t: &str,
    mut accept: impl FnMut(usize, usize) -> Option<(usize, usize)>,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos <= t.len() {
        let Some(m) = re.find_at(t, pos) else { break };
        match accept(m.start(), m.end()) {
            Some(span) => {
                out.push(span);
                pos = m.end().max(m.start() + 1);
            }
            None => {
                pos = m.start() + t[m.start()..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    out
}

/// Full-width ASCII forms (U+FF01..U+FF5E) and the ideographic space mapped to
/// ASCII, one character for one, so character offsets are the same. `None`
/// when there is nothing to map.
fn normalize(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if !b.contains(&0xEF) && !b.contains(&0xE3) {
        return None;
    }
    if !text.chars().any(|c| fold_width(c) != c) {
        return None;
    }
    Some(text.chars().map(fold_width).collect())
}

fn prev(t: &str, b: usize) -> Option<char> {
    t[..b].chars().next_back()
}

fn prev2(t: &str, b: usize) -> Option<char> {
    let mut it = t[..b].chars();
    it.next_back();
    it.next_back()
}

fn next(t: &str, b: usize) -> Option<char> {
    t[b..].chars().next()
}

fn next2(t: &str, b: usize) -> Option<char> {
    t[b..].chars().nth(1)
}

/// Not glued to a longer run of digits, letters, or a decimal/version number.
fn digit_bounded(t: &str, s: usize, e: usize) -> bool {
    let bad_prev = match prev(t, s) {
        Some(p) if p.is_ascii_alphanumeric() || p == '_' => true,
        Some('.') => prev2(t, s).is_some_and(|q| q.is_ascii_digit()),
        _ => false,
    };
    !bad_prev && digit_bounded_after(t, e)
}

fn digit_bounded_after(t: &str, e: usize) -> bool {
    !match next(t, e) {
        Some(n) if n.is_ascii_alphanumeric() || n == '_' => true,
        Some('.') => next2(t, e).is_some_and(|q| q.is_ascii_digit()),
        _ => false,
    }
}

/// The text of up to `n` characters before byte `s`, lower-cased.
fn window_before(t: &str, s: usize, n: usize) -> String {
    let start = t[..s].char_indices().rev().take(n).last().map_or(s, |(i, _)| i);
    t[start..s].to_lowercase()
}

fn window_after(t: &str, e: usize, n: usize) -> String {
    let end = t[e..].char_indices().nth(n).map_or(t.len(), |(i, _)| e + i);
    t[e..end].to_lowercase()
}

fn context_before(t: &str, s: usize, n: usize, words: &[&str]) -> bool {
    let w = window_before(t, s, n);
    words.iter().any(|k| w.contains(k))
}

fn has_context(t: &str, s: usize, e: usize, n: usize, words: &[&str]) -> bool {
    context_before(t, s, n, words) || {
        let w = window_after(t, e, n);
        words.iter().any(|k| w.contains(k))
    }
}

/// Trim what the e-mail pattern over-matched; reject file names like `icon@2x.png`.
fn check_email(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let m = &t[s..e];
    let at = m.find('@')?;
    let local = m[..at].trim_start_matches(['.', '-', '+']);
    let s = s + (at - local.len());
    if local.is_empty() || local.ends_with('.') || local.contains("..") {
        return None;
    }
    let tld = m.rsplit('.').next()?.to_ascii_lowercase();
    const FILES: &[&str] = &[
        "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "js", "ts", "css", "py", "rs", "json",
        "html", "md", "txt", "pdf",
    ];
    if FILES.contains(&tld.as_str()) {
        return None;
    }
    if next(t, e).is_some_and(|n| n.is_ascii_alphanumeric() || n == '_') {
        return None;
    }
    Some((s, e))
}

fn check_ipv4(t: &str, s: usize, e: usize) -> bool {
    let octets: Vec<&str> = t[s..e].split('.').collect();
    if octets
        .iter()
        .any(|o| (o.len() > 1 && o.starts_with('0')) || o.parse::<u32>().map_or(true, |v| v > 255))
    {
        return false;
    }
    let first: u32 = octets[0].parse().unwrap_or(0);
    if first == 0 || first == 127 || first >= 224 {
        return false;
    }
    let bad_prev = prev(t, s).is_some_and(|p| p.is_ascii_alphanumeric() || matches!(p, '_' | '.' | '-'));
    let bad_next = match next(t, e) {
        Some(n) if n.is_ascii_alphanumeric() || n == '_' => true,
        Some('.') => next2(t, e).is_some_and(|q| q.is_ascii_alphanumeric()),
        _ => false,
    };
    if bad_prev || bad_next {
        return false;
    }
    !context_before(
        t,
        s,
        12,
        &[
            "version", "ver.", "版本", "build", "release", "第", "section", "§",
        ],
    )
}

fn check_ipv6(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let mut cand = &t[s..e];
    cand = cand.trim_end_matches('.');
    if cand.ends_with(':') && !cand.ends_with("::") {
        cand = cand.trim_end_matches(':');
    }
    let e = s + cand.len();
    if cand.bytes().filter(|b| b.is_ascii_hexdigit()).count() < 4 {
        return None;
    }
    let addr: Ipv6Addr = cand.parse().ok()?;
    if addr.is_loopback() || addr.is_unspecified() {
        return None;
    }
    if prev(t, s).is_some_and(|p| p.is_ascii_alphanumeric() || p == '_' || p == ':')
        || next(t, e).is_some_and(|n| n.is_ascii_alphanumeric() || n == '_')
    {
        return None;
    }
    Some((s, e))
}

/// Keep the longest candidates, then the more specific type, then the earlier;
/// drop whatever overlaps a kept one. Result sorted by start.
fn resolve(mut c: Vec<Cand>) -> Vec<Cand> {
    c.retain(|x| x.e > x.s);
    c.sort_by(|a, b| {
        (b.e - b.s)
            .cmp(&(a.e - a.s))
            .then(a.ty.cmp(&b.ty))
            .then(a.s.cmp(&b.s))
    });
    let mut kept: BTreeMap<usize, Cand> = BTreeMap::new();
    for x in c {
        let clash_before = kept.range(..x.e).next_back().is_some_and(|(_, k)| k.e > x.s);
        if !clash_before {
            kept.insert(x.s, x);
        }
    }
    kept.into_values().collect()
}

/// Byte offsets of `t` to character offsets (one sweep; `kept` is sorted and disjoint).
fn to_chars(t: &str, kept: &[Cand]) -> Vec<PiiSpan> {
    let mut out = Vec::with_capacity(kept.len());
    let (mut byte, mut ch) = (0usize, 0usize);
    let mut at = |b: usize| {
        ch += t[byte..b].chars().count();
        byte = b;
        ch
    };
    for k in kept {
        let start = at(k.s);
        let end = at(k.e);
        out.push(PiiSpan { ty: k.ty, start, end });
    }
    out
}

/// `text` with every span replaced by `placeholder` (`{type}` filled in).
pub fn redact(text: &str, spans: &[PiiSpan], placeholder: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut it = text.char_indices();
    let mut ci = 0usize;
    let mut byte_of = |target: usize| -> usize {
        while ci < target {
            if it.next().is_none() {
                return text.len();
            }
            ci += 1;
        }
        it.offset()
    };
    let mut last = 0;
    for sp in spans {
        let s = byte_of(sp.start);
        let e = byte_of(sp.end);
        out.push_str(&text[last..s]);
        out.push_str(&placeholder.replace("{type}", sp.ty.name()));
        last = e;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (type, matched text) of every find.
    fn finds(text: &str) -> Vec<(&'static str, String)> {
        let det = PiiDetector::new(&[]);
        let chars: Vec<char> = text.chars().collect();
        det.detect(text)
            .into_iter()
            .map(|s| (s.ty.name(), chars[s.start..s.end].iter().collect()))
            .collect()
    }

    fn one(text: &str, ty: &str, want: &str) {
        assert_eq!(finds(text), vec![(ty, want.to_string())], "in {text:?}");
    }

    fn none(text: &str) {
        assert_eq!(finds(text), vec![], "false positive in {text:?}");
    }

    #[test]
    fn cn_ids() {
        one(
            "身份证号：110101199003074573，请核对",
            "CN_ID",
            "110101199003074573",
        );
        one("ID 32010219880808100x ok", "CN_ID", "32010219880808100x");
        one("身份证 110101900307457", "CN_ID", "110101900307457");
        one(
            "身份证号１１０１０１１９９００３０７４５７３",
            "CN_ID",
            "１１０１０１１９９００３０７４５７３",
        );
        none("编号 110101199003074574"); // wrong check digit
        none("流水号 11010119900307457312"); // inside a longer run
        none("订单 110101900307457"); // 15 digits need ID context
    }

    #[test]
    fn phones_and_landlines() {
        one("手机13812345678，", "PHONE", "13812345678");
        one("call +86 138-1234-5678 now", "PHONE", "+86 138-1234-5678");
        one("电话：0086 139 1234 5678", "PHONE", "0086 139 1234 5678");
        one("You can call me at (814) 360 8593", "PHONE", "(814) 360 8593");
        one("办公室 010-62345678 转", "LANDLINE", "010-62345678");
        one("客服（0755）86001234", "LANDLINE", "（0755）86001234");
        none("时间戳 1684838400 和 1684838400123");
        none("订单号2023050112345678已发货");
        none("日期 2023-05-01，价格 ¥1,299.00");
        none("ISBN 978-7-111-12345-6");
        none("123456*789=97406784");
        none("12345678901 是十一位但不以1[3-9]开头吗？02345678901");
    }

    #[test]
    fn emails_ips_and_cards() {
        one("邮箱 zhang.san@example.com。", "EMAIL", "zhang.san@example.com");
        none("图标 icon@2x.png 和 npm i lodash@4.17.21");
        one("服务器 192.168.1.10 宕机", "IP", "192.168.1.10");
        one("inet 10.41.21.72/24", "IP", "10.41.21.72");
        one(
            "addr 2001:db8:85a3::8a2e:370:7334 up",
            "IP",
            "2001:db8:85a3::8a2e:370:7334",
        );
        none("版本 10.0.19045.2965 与 v1.2.3.4，1.2.3.4.5，127.0.0.1，255.255.255.0");
        none("会议 12:30:45 开始，std::vector");
        one(
            "卡号 6222 0229 1417 7763 174 已绑定",
            "BANK_CARD",
            "6222 0229 1417 7763 174",
        );
        one("card 4929-3813-3266-4295.", "BANK_CARD", "4929-3813-3266-4295");
        one("Amex 370008063608371", "BANK_CARD", "370008063608371");
        none("单号 4111111111111112"); // fails Luhn
    }

    #[test]
    fn context_types_and_secrets() {
        one("我的QQ：123456789，", "QQ", "123456789");
        none("房间号 123456789");
        one("加我微信：zhangsan_88", "WECHAT", "zhangsan_88");
        one("微信号是 lileihan", "WECHAT", "lileihan");
        none("WeChat account settings are here");
        one("Passport No. E12345678", "PASSPORT", "E12345678");
        none("型号 E12345678");
        one(
            "db postgres://admin:s3cret@db.example.com:5432/x",
            "URL_CREDENTIALS",
            "postgres://admin:s3cret@db.example.com:5432",
        );
        one(
            "GET /api?access_token=abcdefghijklmnop1234&x=1",
            "URL_CREDENTIALS",
            "abcdefghijklmnop1234",
        );
        one("key AKIAIOSFODNN7EXAMPLE here", "API_KEY", "AKIAIOSFODNN7EXAMPLE");
        one(
            "OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwx",
            "API_KEY",
            "sk-abcdefghijklmnopqrstuvwx",
        );
        none("a task-abcdefghijklmnopqrstuvwxyz name");
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
        one(&format!("key:\n{pem}\nend"), "PRIVATE_KEY", pem);
    }
}
