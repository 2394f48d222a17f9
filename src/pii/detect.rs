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
    url_hook: Regex,
    api_key: Regex,
    jwt: Regex,
    bearer: Regex,
    email: Regex,
    email_domain: Regex,
    email_cjk_local: Regex,
    cn_id: Regex,
    mobile: Regex,
    nanp: Regex,
    landline: Regex,
    landline_plain: Regex,
    bank: Regex,
    ipv4: Regex,
    ipv6: Regex,
    passport: Regex,
    qq: Regex,
    wechat: Regex,
    wxid: Regex,
}

/// Letters of a domain label: ASCII, kana, CJK ideographs, Hangul.
macro_rules! label_chars {
    () => {
        r"A-Za-z0-9\x{3040}-\x{30ff}\x{3400}-\x{9fff}\x{ac00}-\x{d7af}"
    };
}

/// An e-mail domain: labels, then an ASCII, punycode or non-Latin top-level
/// domain (a CJK one is cut to a known IDN TLD in `check_email`).
const EMAIL_DOMAIN: &str = concat!(
    "(?:[",
    label_chars!(),
    "](?:[",
    label_chars!(),
    "-]{0,61}[",
    label_chars!(),
    r"])?\.)+(?:xn--[A-Za-z0-9-]{2,59}|[A-Za-z]{2,24}|[\x{3040}-\x{30ff}\x{3400}-\x{9fff}\x{ac00}-\x{d7af}]{2,12})",
);

/// Internationalised top-level domains in CJK scripts (IANA root zone).
const IDN_TLDS: &[&str] = &[
    "中国",
    "中國",
    "香港",
    "台湾",
    "台灣",
    "澳門",
    "澳门",
    "新加坡",
    "公司",
    "网络",
    "網絡",
    "在线",
    "网址",
    "网店",
    "网站",
    "商城",
    "商店",
    "商标",
    "集团",
    "我爱你",
    "中文网",
    "手机",
    "游戏",
    "八卦",
    "时尚",
    "移动",
    "微博",
    "政务",
    "公益",
    "健康",
    "企业",
    "购物",
    "娱乐",
    "世界",
    "机构",
    "组织机构",
    "信息",
    "广东",
    "佛山",
    "联通",
    "慈善",
    "珠宝",
    "书籍",
    "点看",
    "通販",
    "コム",
    "みんな",
    "ストア",
    "クラウド",
    "닷컴",
    "닷넷",
    "한국",
    "삼성",
];

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
            url_token: re(concat!(
                r"[?&;#](?i-u:access_token|refresh_token|id_token|auth_token|token|api_key|apikey|api-key|key|secret|client_secret|app_secret|appsecret|secret_key|sig|signature|sign|appid|app_id|session|sessionid|session_id|sid|jwt|q-signature|x-amz-signature|x-amz-security-token|x-goog-signature|x-oss-signature)=([A-Za-z0-9._~%+/=-]{16,})",
                r"|[?&;](?i-u:password|passwd|pwd|pass)=([A-Za-z0-9._~%+/=!*-]{6,})",
                r"|[?&;](?i-u:appid|app_id|appkey|app_key)=([A-Za-z0-9._~%+/=-]{8,})",
            )),
            url_hook: re(concat!(
                r"(?i-u:hooks\.slack\.com/services/)(T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{16,40})",
                r"|(?i-u:open\.feishu\.cn|open\.larksuite\.com)/open-apis/bot/v2/hook/([0-9A-Za-z-]{20,40})",
                r"|(?i-u:discord(?:app)?\.com/api/webhooks/)([0-9]{15,22}/[A-Za-z0-9_-]{40,100})",
                r"|api\.telegram\.org/bot([0-9]{6,12}:[A-Za-z0-9_-]{30,40})",
            )),
            api_key: re(concat!(
                r"AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,}|sk-[A-Za-z0-9_-]{20,}",
                r"|xox[baprs]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|LTAI[A-Za-z0-9]{12,30}|AKID[A-Za-z0-9]{13,40}",
                r"|glpat-[A-Za-z0-9_-]{20,}|hf_[A-Za-z]{30,}|npm_[A-Za-z0-9]{36}|[sr]k_(?:live|test)_[A-Za-z0-9]{20,}",
            )),
            jwt: re(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
            bearer: re(r"(?i-u:bearer) ([A-Za-z0-9._~+/-]{20,}=*)"),
            email: re(&format!("[A-Za-z0-9._%+-]+@{EMAIL_DOMAIN}")),
            email_domain: re(&format!("^{EMAIL_DOMAIN}")),
            email_cjk_local: re(r"[\x{3400}-\x{9fff}]{1,8}@"),
            cn_id: re(r"[0-9]{17}[0-9Xx]|[0-9]{15}"),
            mobile: re(concat!(
                r"(?:(?:\+|00)86[ -]?|86[ -]?|\(\+?86\)[ -]?)?1[3-9][0-9]",
                r"(?:[0-9]{8}|-[0-9]{4}-[0-9]{4}| [0-9]{4} [0-9]{4}|\.[0-9]{4}\.[0-9]{4}|[ -][0-9]{8}|[0-9]{4}[ -][0-9]{4})",
            )),
            nanp: re(
                r"(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}|\+1[2-9][0-9]{2}[2-9][0-9]{6}",
            ),
            // Area code (010, 02x, 0xxx; without the 0 after +86), then a 7-8 digit number,
            // whole or split 4-4 / 3-4.
            landline: re(concat!(
                r"(?:(?:\+|00)86[ -]?|86[ -])(?:\((?:10|2[0-9]|[3-9][0-9]{2})\) ?|(?:10|2[0-9]|[3-9][0-9]{2})[ -])",
                r"(?:[1-9][0-9]{6,7}|[1-9][0-9]{3}[ -][0-9]{4}|[1-9][0-9]{2}[ -][0-9]{4})",
                r"|(?:\((?:010|02[0-9]|0[3-9][0-9]{2})\) ?|(?:010|02[0-9]|0[3-9][0-9]{2})[ -])",
                r"(?:[1-9][0-9]{6,7}|[1-9][0-9]{3}[ -][0-9]{4}|[1-9][0-9]{2}[ -][0-9]{4})",
            )),
            landline_plain: re(r"(?:010|02[0-9]|0[3-9][0-9]{2})[2-9][0-9]{6,7}"),
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
                let g = (1..=3).find_map(|i| cap.get(i)).expect("one value group");
                let v = g.as_str().trim_end_matches(['.', ',']);
                // A short app ID is a number or a code, not a word (`appid=demo_app`).
                let short_id = cap.get(3).is_some() && !v.bytes().any(|b| b.is_ascii_digit());
                if v.len() >= 6 && !short_id {
                    c.push(Cand {
                        ty: PiiType::UrlCredentials,
                        s: g.start(),
                        e: g.start() + v.len(),
                    });
                }
            }
        }
        if self.on(PiiType::UrlCredentials) && b.contains(&b'/') && (t.contains("hook") || t.contains("/bot"))
        {
            for cap in self.url_hook.captures_iter(t) {
                let g = (1..=4).find_map(|i| cap.get(i)).expect("one secret group");
                if !next(t, g.end()).is_some_and(|n| n.is_ascii_alphanumeric() || n == '_' || n == '-') {
                    c.push(Cand {
                        ty: PiiType::UrlCredentials,
                        s: g.start(),
                        e: g.end(),
                    });
                }
            }
        }
        if self.on(PiiType::ApiKey) {
            let glued_before =
                |s: usize| prev(t, s).is_some_and(|p| p.is_ascii_alphanumeric() || p == '_' || p == '-');
            scan(&self.api_key, t, |s, e| {
                let ok = !glued_before(s) && !next(t, e).is_some_and(|n| n.is_ascii_alphanumeric());
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
            if t.contains("eyJ") {
                for m in self.jwt.find_iter(t) {
                    if !glued_before(m.start()) && jwt_header(m.as_str()) {
                        c.push(Cand {
                            ty: PiiType::ApiKey,
                            s: m.start(),
                            e: m.end(),
                        });
                    }
                }
            }
            if t.contains("earer ") || t.contains("EARER ") {
                for cap in self.bearer.captures_iter(t) {
                    let g = cap.get(1).expect("token group");
                    let v = g.as_str();
                    let word = prev(t, cap.get(0).expect("group 0").start())
                        .is_some_and(|p| p.is_ascii_alphanumeric());
                    // A token, not a sentence: a digit or mixed case, and no glued letters after.
                    let tokenish = v.bytes().any(|b| b.is_ascii_digit())
                        || (v.bytes().any(|b| b.is_ascii_uppercase())
                            && v.bytes().any(|b| b.is_ascii_lowercase()));
                    if !word && tokenish {
                        c.push(Cand {
                            ty: PiiType::ApiKey,
                            s: g.start(),
                            e: g.end(),
                        });
                    }
                }
            }
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
            if !t.is_ascii() {
                self.cjk_local_emails(t, &mut c);
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
                (ok && !numeric_veto(t, s, e, false)).then_some((s, e))
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
                    .find(|&end| {
                        digit_bounded(t, s, end)
                            && valid_card(&t[s..end], self.max_birth_year)
                            && !numeric_veto(t, s, end, true)
                    })
                    .map(|end| (s, end))
            });
            push(PiiType::BankCard, cards);
        }
        if self.on(PiiType::Phone) {
            let mobiles = scan(&self.mobile, t, |s, e| {
                let plus = t[s..].starts_with('+') || t[s..].starts_with('(');
                let ok_prev = plus || prev(t, s) != Some('+');
                let ok = ok_prev
                    && digit_bounded(t, s, e)
                    && !grouped_glued(t, s, e)
                    && !numeric_veto(t, s, e, true);
                ok.then_some((s, e))
            });
            push(PiiType::Phone, mobiles);
            let nanp = scan(&self.nanp, t, |s, e| {
                let glued_before =
                    prev(t, s).is_some_and(|p| p.is_ascii_alphanumeric() || matches!(p, '-' | '.' | '_'));
                let glued_after = next(t, e).is_some_and(|n| n.is_ascii_alphanumeric() || n == '-');
                let decimal = next(t, e) == Some('.') && next2(t, e).is_some_and(|n| n.is_ascii_digit());
                // `+86 531 494 8730` is a Chinese landline, not a North American number.
                let chinese = window_before(t, s, 6)
                    .trim_end_matches([' ', '-', '('])
                    .ends_with("86");
                // Area codes N00 and N11 are toll-free and service numbers (and
                // `400-820-8820` is a Chinese company hotline), not a person's line.
                let digits: String = t[s..e].chars().filter(char::is_ascii_digit).collect();
                let area = if digits.len() == 11 {
                    &digits[1..4]
                } else {
                    &digits[..3]
                };
                let service = &area[1..] == "00" || &area[1..] == "11";
                let ok = !glued_before
                    && !glued_after
                    && !decimal
                    && !chinese
                    && !service
                    && !numeric_veto(t, s, e, true);
                ok.then_some((s, e))
            });
            push(PiiType::Phone, nanp);
        }
        if self.on(PiiType::Landline) {
            let v = scan(&self.landline, t, |s, e| {
                let ok = digit_bounded(t, s, e) && !grouped_glued(t, s, e) && !numeric_veto(t, s, e, true);
                ok.then_some((s, e))
            });
            push(PiiType::Landline, v);
            // Area code and number written together: only right after a telephone word.
            let v = scan(&self.landline_plain, t, |s, e| {
                let ok = digit_bounded(t, s, e)
                    && context_before(t, s, 12, PHONE_CUES)
                    && !numeric_veto(t, s, e, true);
                ok.then_some((s, e))
            });
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
                    && qq_cue(t, s)
                    && !numeric_veto(t, s, e, false);
                ok.then_some((s, e))
            });
            push(PiiType::Qq, v);
        }
    }

    /// E-mail addresses with a CJK local part (`张伟@公司.中国`), when the local
    /// part stands on its own (after a space, punctuation or the start).
    fn cjk_local_emails(&self, t: &str, c: &mut Vec<Cand>) {
        for m in self.email_cjk_local.find_iter(t) {
            if prev(t, m.start()).is_some_and(|p| is_cjk(p) || p.is_ascii_alphanumeric()) {
                continue;
            }
            let Some(dm) = self.email_domain.find(&t[m.end()..]) else {
                continue;
            };
            if let Some(e) = check_domain(t, m.end(), m.end() + dm.end()) {
                c.push(Cand {
                    ty: PiiType::Email,
                    s: m.start(),
                    e,
                });
            }
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
    let e = check_domain(t, s + local.len() + 1, e)?;
    Some((s, e))
}

/// The end of a valid domain `t[d..e]`: a CJK top-level domain is cut to the
/// longest known IDN TLD it starts with (the pattern runs on into the sentence).
fn check_domain(t: &str, d: usize, e: usize) -> Option<usize> {
    let dot = d + t[d..e].rfind('.')?;
    let tld = &t[dot + 1..e];
    let e = if tld.is_ascii() {
        const FILES: &[&str] = &[
            "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "js", "ts", "css", "py", "rs", "json",
            "html", "md", "txt", "pdf",
        ];
        if FILES.contains(&tld.to_ascii_lowercase().as_str()) {
            return None;
        }
        e
    } else {
        let known = IDN_TLDS
            .iter()
            .filter(|k| tld.starts_with(*k))
            .max_by_key(|k| k.len())?;
        dot + 1 + known.len()
    };
    if next(t, e).is_some_and(|n| n.is_ascii_alphanumeric() || n == '_') {
        return None;
    }
    Some(e)
}

fn is_cjk(c: char) -> bool {
    ('\u{3400}'..='\u{9fff}').contains(&c)
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
    // `1.2.3.4`, `3.0.1.67`: three single-digit parts read as a version number
    // (the few public addresses of that form, like 8.8.8.8, are services, not people).
    if octets[..3].iter().all(|o| o.len() == 1) {
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
    // A software version reads like an address: words about versions, releases
    // and products around it tell them apart.
    !contains_word(&window_before(t, s, 14), IP_VERSION_BEFORE)
        && !contains_word(&window_after(t, e, 8), IP_VERSION_AFTER)
}

const IP_VERSION_BEFORE: &[&str] = &[
    "version",
    "ver",
    "版本",
    "build",
    "release",
    "第",
    "section",
    "§",
    "升级",
    "更新",
    "安装",
    "下载",
    "upgrade",
    "update",
    "install",
    "windows",
    "chrome",
    "firefox",
    "android",
    "ios",
    "macos",
    "office",
    "浏览器",
    "客户端",
    "音乐",
    "固件",
    "firmware",
    "sdk",
    "tested on",
    "v",
    "版",
    "npm",
    "pip",
    "yarn",
    "pnpm",
];
const IP_VERSION_AFTER: &[&str] = &[
    "版", "更新", "新增", "修复", "发布", "release", "build", "beta", "update", "-rc", "-alpha",
];

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

/// Words that say a number is someone's phone, card or account.
const PERSONAL_CUES: &[&str] = &[
    "电话",
    "手机",
    "联系",
    "致电",
    "拨打",
    "热线",
    "来电",
    "座机",
    "固话",
    "传真",
    "号码",
    "微信",
    "qq",
    "卡号",
    "账号",
    "帐号",
    "账户",
    "银行",
    "身份证",
    "证件",
    "扣扣",
    "企鹅",
    "tel",
    "phone",
    "mobile",
    "cell",
    "call",
    "contact",
    "fax",
    "whatsapp",
    "sms",
    "text me",
    "card",
    "account",
];

/// Words before a landline written without separators.
const PHONE_CUES: &[&str] = &[
    "电话", "座机", "固话", "传真", "致电", "拨打", "热线", "联系", "tel", "phone", "fax", "call",
];

/// Words that make a digit run a quantity in a calculation.
const MATH_WORDS_ZH: &[&str] = &[
    "计算",
    "乘以",
    "除以",
    "等于",
    "加上",
    "减去",
    "之和",
    "之差",
    "之积",
    "之商",
    "的和",
    "的积",
    "的商",
    "的差",
    "余数",
    "平方",
    "立方",
    "开方",
    "质数",
    "素数",
    "因数",
    "倍数",
    "整除",
    "约数",
    "求和",
    "相加",
    "相减",
    "相乘",
    "相除",
    "运算",
    "个位",
    "位数",
    "四舍五入",
    "小数",
];
const MATH_WORDS_EN: &[&str] = &[
    "calculate",
    "compute",
    "multiply",
    "multiplied",
    "divide",
    "divided",
    "divisible",
    "times",
    "plus",
    "minus",
    "equals",
    "sum",
    "product",
    "remainder",
    "modulo",
    "mod",
    "prime",
    "factor",
    "factors",
    "factorize",
    "square",
    "sqrt",
    "digits",
    "round",
    "rounded",
    "quotient",
    "difference",
    "average",
];
/// Operators that make any number near them a term of a calculation.
const STRONG_OPS: &[&str] = &["×", "÷", "=", "≈", "≠", "^", "√", "±"];

/// Units and currencies right after a number: a quantity, not an identifier.
const UNITS_AFTER: &[&str] = &[
    "元", "块", "万", "亿", "人", "次", "个", "件", "米", "吨", "斤", "克", "年", "天", "岁", "倍", "位",
    "小时", "分钟", "秒", "字节", "%", "‰", "美元", "dollars", "usd", "rmb", "yuan", "people", "km", "kg",
    "bytes",
];

/// Words before an order, tracking or serial number.
const ORDER_CUES: &[&str] = &[
    "单号",
    "订单",
    "编号",
    "流水",
    "序列号",
    "序号",
    "批号",
    "批次",
    "货号",
    "型号",
    "条码",
    "票号",
    "发票",
    "学号",
    "工号",
    "合同号",
    "交易号",
    "快递",
    "运单",
    "包裹",
    "物流",
    "order",
    "tracking",
    "invoice",
    "serial",
    "sku",
    "ref",
    "reference",
    "batch",
    "lot ",
    "part number",
    "model",
    "transaction",
    "receipt",
    "parcel",
    "shipment",
];

/// `w` holds a run of at least `n` ASCII digits.
fn has_digit_run(w: &str, n: usize) -> bool {
    let mut run = 0;
    for b in w.bytes() {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        if run >= n {
            return true;
        }
    }
    false
}

/// The part of `w` after its last sentence end.
fn clause_tail(w: String) -> String {
    let cut = w
        .char_indices()
        .rfind(|&(i, c)| {
            matches!(c, '。' | '！' | '？' | '；' | '\n')
                || (matches!(c, '.' | '!' | '?' | ';') && w[i + 1..].starts_with(' '))
        })
        .map(|(i, c)| i + c.len_utf8());
    match cut {
        Some(i) => w[i..].to_string(),
        None => w,
    }
}

/// The part of `w` before its first sentence end.
fn clause_head(mut w: String) -> String {
    let cut = w.char_indices().find(|&(i, c)| {
        matches!(c, '。' | '！' | '？' | '；' | '\n')
            || (matches!(c, '.' | '!' | '?' | ';') && (w[i + 1..].starts_with(' ') || i + 1 == w.len()))
    });
    if let Some((i, _)) = cut {
        w.truncate(i);
    }
    w
}

fn contains_word(w: &str, words: &[&str]) -> bool {
    words
        .iter()
        .any(|k| w.match_indices(k).any(|(i, _)| word_at(w, i, k)))
}

/// `k` at byte `i` of `w` is not part of a longer ASCII word.
fn word_at(w: &str, i: usize, k: &str) -> bool {
    let before = w[..i].chars().next_back();
    let after = w[i + k.len()..].chars().next();
    !before.is_some_and(|c| c.is_ascii_alphabetic()) && !after.is_some_and(|c| c.is_ascii_alphabetic())
}

/// A math word or operator in the clause `w` before (`before`) or after the
/// digit run, with no other number between them unless it is a term of the
/// same expression (`计算 138… + 139…`).
fn math_marker(w: &str, before: bool) -> bool {
    let w = w
        .replace("计算机", "   ")
        .replace("除了", "  ")
        .replace("乘客", "  ")
        .replace("乘车", "  ");
    let lists: [(&[&str], bool); 3] = [(STRONG_OPS, false), (MATH_WORDS_ZH, false), (MATH_WORDS_EN, true)];
    lists.iter().any(|(words, ascii)| {
        words.iter().any(|k| {
            w.match_indices(k).any(|(i, _)| {
                if *ascii && !word_at(&w, i, k) {
                    return false;
                }
                let between = if before { &w[i + k.len()..] } else { &w[..i] };
                !has_digit_run(between, 4)
                    || between
                        .chars()
                        .all(|c| c.is_ascii_digit() || " +-*/×÷()=.,".contains(c))
            })
        })
    })
}

/// The last byte offset in `w` where one of `words` starts.
fn last_cue(w: &str, words: &[&str]) -> Option<usize> {
    words.iter().filter_map(|k| w.rfind(k)).max()
}

/// A digit run that is a term of a calculation, a quantity, a price, or (with
/// `order_cues`) an order, tracking or serial number, not personal data.
fn numeric_veto(t: &str, s: usize, e: usize, order_cues: bool) -> bool {
    // Context is read within the sentence: a cue or a sum in the next one says nothing.
    let wide = clause_tail(window_before(t, s, 40));
    // A cue belongs to the nearest number after it: with another number in
    // between (`账户 6222…（户名）请判断 138… 是不是质数`) it is not this one's.
    let cue = last_cue(&wide, PERSONAL_CUES).filter(|&c| !has_digit_run(&wide[c..], 4));
    let before = {
        let cut = wide.char_indices().rev().nth(23).map_or(0, |(i, _)| i);
        &wide[cut..]
    };
    let after = clause_head(window_after(t, e, 24));
    let after = after.as_str();
    // Operators glued to the digit run with a number on the other side.
    let op_after = {
        let a = after.trim_start();
        a.starts_with(['+', '-', '*', '/', '×', '÷', '=', '^', '%'])
            .then(|| {
                (
                    a.chars().next().unwrap(),
                    a[a.chars().next().unwrap().len_utf8()..].trim_start(),
                )
            })
            .filter(|(op, rest)| {
                *op == '=' || *op == '%' || rest.starts_with(|d: char| d.is_ascii_digit() || d == '(')
            })
    };
    let op_before = {
        let b = before.trim_end();
        b.chars()
            .next_back()
            .filter(|ch| matches!(ch, '+' | '-' | '*' | '/' | '×' | '÷' | '=' | '^'))
            .map(|op| (op, b[..b.len() - op.len_utf8()].trim_end()))
            .filter(|(op, rest)| *op == '=' || rest.ends_with(|d: char| d.is_ascii_digit() || d == ')'))
    };
    for (op, other) in op_after
        .iter()
        .map(|(o, r)| (*o, r.chars().take_while(char::is_ascii_digit).count()))
        .chain(
            op_before
                .iter()
                .map(|(o, r)| (*o, r.chars().rev().take_while(char::is_ascii_digit).count())),
        )
    {
        match op {
            '*' | '×' | '÷' | '^' | '%' => return true,
            '=' if cue.is_none() => return true,
            '+' | '-' | '/' if other <= 6 && other > 0 => return true,
            _ => {}
        }
    }
    if cue.is_none() && (math_marker(before, true) || math_marker(after, false)) {
        return true;
    }
    let a = after.trim_start();
    if UNITS_AFTER
        .iter()
        .any(|u| a.starts_with(u) && !a[u.len()..].starts_with(|c: char| c.is_ascii_alphabetic()))
    {
        return true;
    }
    if before.trim_end().ends_with(['¥', '$', '€', '£', '￥']) {
        return true;
    }
    if order_cues {
        if let Some(o) = last_cue(&wide, ORDER_CUES) {
            if cue.is_none_or(|c| c < o) {
                return true;
            }
        }
    }
    false
}

/// A number written in groups (`0571 1234 5678`) that is only part of a longer
/// grouped run (`6222 0571 1234 5678 9`): not glued by digits, but by its separator.
fn grouped_glued(t: &str, s: usize, e: usize) -> bool {
    let m = &t[s..e];
    let seps: Vec<char> = [' ', '-', '.'].into_iter().filter(|c| m.contains(*c)).collect();
    if seps.is_empty() {
        return false;
    }
    let glued_before =
        prev(t, s).is_some_and(|p| seps.contains(&p)) && prev2(t, s).is_some_and(|q| q.is_ascii_digit());
    let glued_after = next(t, e).is_some_and(|n| seps.contains(&n)) && {
        let run = t[e..].chars().skip(1).take_while(char::is_ascii_digit).count();
        run >= 5
    };
    glued_before || glued_after
}

/// A QQ number's cue (`QQ`, `扣扣`, `企鹅号`) stands shortly before it with
/// nothing but filler between (`QQ号码：`, `my QQ number is`); `QQ群`, `QQ空间`,
/// `QQ音乐` (a product, then its number) do not count.
fn qq_cue(t: &str, s: usize) -> bool {
    let w = window_before(t, s, 24);
    let Some((pos, cue)) = ["qq", "扣扣", "企鹅号"]
        .iter()
        .filter_map(|k| w.rfind(k).map(|p| (p, *k)))
        .max_by_key(|(p, _)| *p)
    else {
        return false;
    };
    if w[..pos]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        return false;
    }
    let mut gap = &w[pos + cue.len()..];
    const FILLER: &[&str] = &[
        "号码", "账号", "帐号", "同号", "微信", "wechat", "number", "account", "号", "是", "为", "和", "id",
        "no.", "no", "num", "is", "and", "or", "me", "my", "at", "on", "&",
    ];
    'outer: while !gap.is_empty() {
        let ch = gap.chars().next().unwrap();
        if ch.is_whitespace() || ":：=#()（）,，-/、\"'“”「」[]【】.".contains(ch) {
            gap = &gap[ch.len_utf8()..];
            continue;
        }
        for f in FILLER {
            if let Some(rest) = gap.strip_prefix(f) {
                let ascii_word = f.is_ascii() && f.chars().all(|c| c.is_ascii_alphabetic());
                if ascii_word && rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    continue;
                }
                gap = rest;
                continue 'outer;
            }
        }
        return false;
    }
    true
}

/// The first segment of a JWT decodes to a JSON header with `"alg"`.
fn jwt_header(token: &str) -> bool {
    let seg = token.split('.').next().unwrap_or("");
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::with_capacity(seg.len());
    for b in seg.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return false,
        };
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    let h = String::from_utf8_lossy(&out);
    h.starts_with('{') && h.contains("\"alg\"")
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
    fn written_forms_of_chinese_numbers() {
        for (text, want) in [
            ("座机 0571-1234-5678 找王工", "0571-1234-5678"),
            ("电话0871 6543 2109。", "0871 6543 2109"),
            ("总机：+86-10-65521234", "+86-10-65521234"),
            ("前台(0755)1234-5678转", "(0755)1234-5678"),
            ("Tel +86 (20) 8249 2207.", "+86 (20) 8249 2207"),
            ("传真 0086-21-62345678", "0086-21-62345678"),
            ("座机：02162345678", "02162345678"),
        ] {
            one(text, "LANDLINE", want);
        }
        for (text, want) in [
            ("手机 138.1234.5678", "138.1234.5678"),
            ("联系 186-56409839", "186-56409839"),
            ("whatsapp +8613812345678", "+8613812345678"),
            ("(+86) 159-8842-0484 李", "(+86) 159-8842-0484"),
        ] {
            one(text, "PHONE", want);
        }
        none("客服热线 400-820-8820，toll-free 1-800-555-0199");
        // 7-digit groups after +86 are a landline, not a North American number.
        one("office +86 531 494 8730 today", "LANDLINE", "+86 531 494 8730");
        // A grouped number inside a longer grouped run is not a phone.
        none("序列 6222 0571 1234 5678 9");
    }

    #[test]
    fn arithmetic_quantities_and_order_numbers_veto() {
        none("计算 13912345678 ÷ 7 的结果");
        none("13812345678 乘以 59 等于多少？");
        none("What is 15707879578 divided by 61?");
        none("Compute 13517502410 + 13617644590 and show your work.");
        none("请判断 17600937871 是不是质数。");
        none("已知 a = 13800138000，求 a 的平方");
        none("求 4565548612061819 除以 54 的余数。");
        none("订单编号：18114457874，请妥善保存。");
        none("Total due: 18348796571 元 including tax.");
        // A cue for an earlier number is not this one's; a cue for this one keeps it.
        one(
            "退款账户 6258073459135342（户名：陈静）请判断 13196938345 是不是质数。",
            "BANK_CARD",
            "6258073459135342",
        );
        one("计算机专业王老师，手机13812345678", "PHONE", "13812345678");
        one("手机：13812345678，计算工资用", "PHONE", "13812345678");
        none("版本 3.0.1.67 和 npm i vue@1.7.1.71");
    }

    #[test]
    fn qq_cue_and_products() {
        one("My QQ number is 12345678, add me", "QQ", "12345678");
        one("扣扣号为 790403195 微信同号", "QQ", "790403195");
        one("QQ/微信：123456789", "QQ", "123456789");
        none("欢迎加入QQ群 629773262 一起讨论");
        none("QQ空间访问量 125634，QQ音乐 20231 首");
        none("QQ会员 12345 积分");
    }

    #[test]
    fn idn_emails_webhooks_and_tokens() {
        one("发到 zhang.wei@公司.中国谢谢", "EMAIL", "zhang.wei@公司.中国");
        one("邮箱 li@测试.网络。", "EMAIL", "li@测试.网络");
        one("联系邮箱：张伟@公司.中国", "EMAIL", "张伟@公司.中国");
        one("info@example.中国", "EMAIL", "info@example.中国");
        none("邮箱 a@例子.不存在的后缀");
        one(
            "https://oapi.dingtalk.com/robot/send?access_token=0123456789abcdef0123456789abcdef&x=1",
            "URL_CREDENTIALS",
            "0123456789abcdef0123456789abcdef",
        );
        let f = finds("https://x.cn/n?appid=wx1234567890abcdef&sign=0A1B2C3D4E5F60718293A4B5C6D7E8F9");
        assert_eq!(f.len(), 2, "{f:?}");
        one(
            "GET /a.jpg?q-sign-algorithm=sha1&q-signature=ed09d8b4c7278721444d60f9a6f6687ea29e378c",
            "URL_CREDENTIALS",
            "ed09d8b4c7278721444d60f9a6f6687ea29e378c",
        );
        one(
            "hook https://open.feishu.cn/open-apis/bot/v2/hook/4cf00350-be19-f6ab-c0a5-d4ba19dc70b1 ok",
            "URL_CREDENTIALS",
            "4cf00350-be19-f6ab-c0a5-d4ba19dc70b1",
        );
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        one(&format!("token: {jwt} end"), "API_KEY", jwt);
        one(&format!("cb?session={jwt}&next=1"), "URL_CREDENTIALS", jwt);
        none("eyJub3RhIjoiand0In0.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefgh"); // no "alg" in the header
        one(
            "ak LTAI5tej5lcKZC1G0BOnhX35 x",
            "API_KEY",
            "LTAI5tej5lcKZC1G0BOnhX35",
        );
        none("?page=2&sort=desc&utm_source=zhang_wei_newsletter&appid=demo_app");
        one("GET /sms?appid=1400123456&x=1", "URL_CREDENTIALS", "1400123456");
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
