//! A generated PII evaluation set, harder than `tests/data/pii_eval.jsonl`:
//! templates written in many phrasings (cue words at a distance, English and
//! Chinese, lists, URLs, code), values in every common written form, real
//! sentences around them, exact gold spans with types, and hard negatives of
//! every look-alike kind (order and tracking numbers, invalid checksums,
//! timestamps, prices, ISBNs, versions, arithmetic, QQ products, non-secret
//! query parameters).
//!
//! Deterministic: a fixed seed drives a small splitmix64 generator, and the
//! carrier sentences are read in file order from the SFT sets in the shared data
//! (`alpaca_zh_hikariming`, `alpaca_en`; built-in sentences when those are not
//! there), by path, never copied into the repository.
//!
//! Split by template: every template belongs to the tune part or to the held
//! part (`HELD` arrays), and the carrier sentences of the two parts are disjoint
//! (even / odd sentence index). Rules are written on the tune part; the held
//! part is only scored.

#![allow(dead_code)]

use std::path::Path;

/// One labelled text.
#[derive(Debug, Clone)]
pub struct Case {
    pub text: String,
    /// (type, start, end) in characters.
    pub gold: Vec<(String, usize, usize)>,
    pub held: bool,
    pub negative: bool,
    /// `type/part/index` of the main template, e.g. `PHONE/tune/2`.
    pub template: String,
}

/// splitmix64: small, fixed, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % (hi - lo + 1) as u64) as u32
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    pub fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| (b'0' + self.below(10) as u8) as char).collect()
    }
    fn from(&mut self, alphabet: &str, n: usize) -> String {
        let a: Vec<char> = alphabet.chars().collect();
        (0..n).map(|_| a[self.below(a.len())]).collect()
    }
    pub fn alnum(&mut self, n: usize) -> String {
        self.from(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            n,
        )
    }
    pub fn lower_alnum(&mut self, n: usize) -> String {
        self.from("abcdefghijklmnopqrstuvwxyz0123456789", n)
    }
    pub fn hex(&mut self, n: usize) -> String {
        self.from("0123456789abcdef", n)
    }
    pub fn b64url(&mut self, n: usize) -> String {
        self.from(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
            n,
        )
    }
}

/// A filled slot: its text and the gold spans inside it (character offsets).
type Filled = (String, Vec<(&'static str, usize, usize)>);

fn plain(s: String) -> Filled {
    (s, Vec::new())
}

fn whole(ty: &'static str, s: String) -> Filled {
    let n = s.chars().count();
    (s, vec![(ty, 0, n)])
}

/// Build a string from pieces, some of them gold spans.
struct Builder {
    s: String,
    spans: Vec<(&'static str, usize, usize)>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            s: String::new(),
            spans: Vec::new(),
        }
    }
    fn lit(&mut self, t: &str) -> &mut Builder {
        self.s.push_str(t);
        self
    }
    fn span(&mut self, ty: &'static str, t: &str) -> &mut Builder {
        let st = self.s.chars().count();
        self.s.push_str(t);
        self.spans.push((ty, st, st + t.chars().count()));
        self
    }
    fn done(&mut self) -> Filled {
        (std::mem::take(&mut self.s), std::mem::take(&mut self.spans))
    }
}

// ---------------------------------------------------------------- values

const MOBILE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "145", "147", "150", "151", "152",
    "153", "155", "156", "157", "158", "159", "166", "170", "171", "173", "175", "176", "177", "178", "180",
    "181", "182", "183", "184", "185", "186", "187", "188", "189", "191", "193", "195", "198", "199",
];

fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap(),
            _ => c,
        })
        .collect()
}

pub fn mobile(r: &mut Rng) -> String {
    let p = r.pick(MOBILE_PREFIXES).to_string();
    let (a, b) = (r.digits(4), r.digits(4));
    let body = match r.below(9) {
        0..=2 => format!("{p}{a}{b}"),
        3 | 4 => format!("{p}-{a}-{b}"),
        5 | 6 => format!("{p} {a} {b}"),
        7 => format!("{p}.{a}.{b}"),
        _ => format!("{p}-{a}{b}"),
    };
    let cc = match r.below(14) {
        0 => "+86 ",
        1 => "+86-",
        2 => "+86",
        3 => "(+86) ",
        4 => "0086 ",
        5 => "86-",
        6 => "+86 ",
        _ => "",
    };
    let s = format!("{cc}{body}");
    if r.chance(0.05) {
        fullwidth(&s)
    } else {
        s
    }
}

const AREA3: &[&str] = &[
    "010", "020", "021", "022", "023", "024", "025", "027", "028", "029",
];
const AREA4: &[&str] = &[
    "0571", "0755", "0871", "0512", "0531", "0591", "0731", "0851", "0898", "0431", "0451", "0771", "0991",
    "0574", "0769", "0592", "0311", "0371", "0551", "0791",
];

/// A Chinese landline in one of its written forms.
pub fn landline(r: &mut Rng) -> String {
    let big = r.chance(0.45);
    let area = if big { *r.pick(AREA3) } else { *r.pick(AREA4) };
    let eight = big || r.chance(0.7);
    let first = r.range(2, 8).to_string();
    let local = if eight {
        format!("{first}{}", r.digits(7))
    } else {
        format!("{first}{}", r.digits(6))
    };
    let grouped = |sep: &str| {
        if eight {
            format!("{}{sep}{}", &local[..4], &local[4..])
        } else {
            format!("{}{sep}{}", &local[..3], &local[3..])
        }
    };
    let a = &area[1..];
    match r.below(16) {
        0 | 1 => format!("{area}-{local}"),
        2 => format!("{area} {local}"),
        3 => format!("({area}){local}"),
        4 => format!("（{area}）{local}"),
        5 => format!("({area}) {local}"),
        6 => format!("{area}-{}", grouped("-")),
        7 => format!("{area} {}", grouped(" ")),
        8 => format!("({area}){}", grouped("-")),
        9 => format!("（{area}）{}", grouped(" ")),
        10 => format!("+86-{a}-{local}"),
        11 => format!("+86 {a} {}", grouped(" ")),
        12 => format!("+86 ({a}) {local}"),
        13 => format!("0086-{a}-{local}"),
        14 => format!("+86-{a}-{}", grouped("-")),
        _ => format!("{area}-{local}"),
    }
}

/// Area code and number written together (only next to a telephone cue word).
pub fn landline_plain(r: &mut Rng) -> String {
    let area = if r.chance(0.5) {
        *r.pick(AREA3)
    } else {
        *r.pick(AREA4)
    };
    format!("{area}{}{}", r.range(2, 8), r.digits(7))
}

const REGIONS: &[&str] = &[
    "110101", "110105", "310104", "310115", "440305", "440106", "330106", "510107", "420102", "320102",
    "610113", "500103", "370202", "350203", "430104", "210102", "120101", "530102", "450102", "650102",
];

fn days_in(y: u32, m: u32) -> u32 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn id17(r: &mut Rng) -> String {
    let y = r.range(1950, 2006);
    let m = r.range(1, 12);
    let d = r.range(1, days_in(y, m));
    format!("{}{y}{m:02}{d:02}{}", r.pick(REGIONS), r.digits(3))
}

fn id_check(first17: &str) -> char {
    curate::pii::cn_id_check_char(first17).unwrap()
}

pub fn cn_id(r: &mut Rng) -> String {
    let f = id17(r);
    let c = id_check(&f);
    let c = if c == 'X' && r.chance(0.3) { 'x' } else { c };
    format!("{f}{c}")
}

/// A resident-ID look-alike: real region and date, wrong check digit.
pub fn cn_id_bad(r: &mut Rng) -> String {
    let f = id17(r);
    let good = id_check(&f);
    let bad = loop {
        let c = (b'0' + r.below(10) as u8) as char;
        if c != good {
            break c;
        }
    };
    format!("{f}{bad}")
}

fn luhn_digit(body: &str) -> char {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = (b - b'0') as u32;
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    (b'0' + ((10 - sum % 10) % 10) as u8) as char
}

fn card_digits(r: &mut Rng) -> String {
    let (prefix, len) = *r.pick(&[
        ("622202", 19),
        ("622848", 19),
        ("621700", 19),
        ("623668", 19),
        ("622588", 16),
        ("625807", 16),
        ("436742", 16),
        ("4", 16),
        ("51", 16),
        ("55", 16),
        ("2221", 16),
        ("37", 15),
        ("34", 15),
        ("3528", 16),
    ]);
    let body = format!("{prefix}{}", r.digits(len - 1 - prefix.len()));
    let c = luhn_digit(&body);
    format!("{body}{c}")
}

fn group_card(r: &mut Rng, d: &str) -> String {
    let sep = if r.chance(0.5) { " " } else { "-" };
    if d.len() == 15 {
        return format!("{}{sep}{}{sep}{}", &d[..4], &d[4..10], &d[10..]);
    }
    let mut out = String::new();
    for (i, ch) in d.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push_str(sep);
        }
        out.push(ch);
    }
    out
}

pub fn card(r: &mut Rng) -> String {
    let d = card_digits(r);
    if r.chance(0.5) {
        d
    } else {
        group_card(r, &d)
    }
}

/// A card look-alike: issuer prefix and length of a card, Luhn wrong.
pub fn card_bad(r: &mut Rng) -> String {
    let d = card_digits(r);
    let last = d.as_bytes()[d.len() - 1] - b'0';
    let bad = format!("{}{}", &d[..d.len() - 1], (last + 1 + r.below(8) as u8) % 10);
    if r.chance(0.5) {
        bad
    } else {
        group_card(r, &bad)
    }
}

const SURNAMES: &[&str] = &[
    "zhang", "wang", "li", "liu", "chen", "yang", "zhao", "huang", "zhou", "wu", "xu", "sun", "ma", "zhu",
];
const GIVEN: &[&str] = &[
    "wei", "fang", "na", "min", "jing", "lei", "yang", "jun", "xiaoming", "tao", "ming", "hui", "yan", "bo",
];
const DOMAINS: &[&str] = &[
    "163.com",
    "126.com",
    "qq.com",
    "gmail.com",
    "outlook.com",
    "foxmail.com",
    "sina.com",
    "sohu.com",
    "example.com",
    "example.org",
    "company.com.cn",
    "mail.tsinghua.edu.cn",
    "pku.edu.cn",
    "yeah.net",
    "proton.me",
    "hotmail.com",
    "aliyun.com",
    "corp.example.cn",
    "lab.example.ac.uk",
];
const IDN_DOMAINS: &[&str] = &[
    "公司.中国",
    "测试.网络",
    "例子.公司",
    "北京大学.中国",
    "科技.在线",
    "example.中国",
    "示例.com",
    "邮件.商城",
    "研究院.中國",
    "书店.网店",
    "医院.集团",
];
const CJK_NAMES: &[&str] = &["张伟", "李娜", "王芳", "刘洋", "陈静", "用户", "客服", "联系人"];

pub fn email_local(r: &mut Rng) -> String {
    let (n, m) = (*r.pick(SURNAMES), *r.pick(GIVEN));
    match r.below(7) {
        0 => format!("{n}.{m}"),
        1 => format!("{m}{n}{}", r.digits(2)),
        2 => format!("{n}_{m}"),
        3 => format!("{n}-{m}"),
        4 => format!("{m}.{n}{}", r.digits(4)),
        5 => format!("{n}+news"),
        _ => format!("{}{}", &m[..1], n),
    }
}

pub fn email(r: &mut Rng) -> String {
    let local = email_local(r);
    let dom = if r.chance(0.25) {
        *r.pick(IDN_DOMAINS)
    } else {
        *r.pick(DOMAINS)
    };
    format!("{local}@{dom}")
}

pub fn email_cjk(r: &mut Rng) -> String {
    format!("{}@{}", r.pick(CJK_NAMES), r.pick(IDN_DOMAINS))
}

pub fn ipv4(r: &mut Rng) -> String {
    let first = loop {
        let f = r.range(1, 223);
        if f != 127 {
            break f;
        }
    };
    format!(
        "{first}.{}.{}.{}",
        r.range(0, 255),
        r.range(0, 255),
        r.range(1, 254)
    )
}

pub fn ipv6(r: &mut Rng) -> String {
    let g = |r: &mut Rng| format!("{:x}", r.range(1, 0xffff));
    match r.below(3) {
        0 => (0..8).map(|_| g(r)).collect::<Vec<_>>().join(":"),
        1 => format!("2001:db8::{}:{}", g(r), g(r)),
        _ => format!("fe80::{}:{}:{}:{}", g(r), g(r), g(r), g(r)),
    }
}

pub fn passport(r: &mut Rng) -> String {
    match r.below(4) {
        0 | 1 => format!("E{}", r.digits(8)),
        2 => format!("G{}", r.digits(8)),
        _ => format!("E{}{}", (b'A' + r.below(26) as u8) as char, r.digits(7)),
    }
}

pub fn qq(r: &mut Rng) -> String {
    let n = *r.pick(&[5usize, 6, 7, 8, 8, 9, 9, 9, 10, 10, 11]);
    format!("{}{}", r.range(1, 9), r.digits(n - 1))
}

pub fn wechat(r: &mut Rng) -> String {
    if r.chance(0.2) {
        let n = r.range(10, 14) as usize;
        return format!("wxid_{}", r.lower_alnum(n));
    }
    let (n, m) = (*r.pick(SURNAMES), *r.pick(GIVEN));
    match r.below(5) {
        0 => format!("{n}_{m}{}", r.digits(2)),
        1 => format!("{m}{n}{}", r.digits(4)),
        2 => format!("{n}-{m}-{}", r.digits(3)),
        3 => format!("{}{}_{}", n, m, r.lower_alnum(3)),
        _ => format!("{}{}{}", &m[..1].to_uppercase(), n, r.digits(6)),
    }
}

fn b64url_encode(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

pub fn jwt(r: &mut Rng) -> String {
    let header = r.pick(&[
        r#"{"alg":"HS256","typ":"JWT"}"#,
        r#"{"typ":"JWT","alg":"RS256"}"#,
        r#"{"alg":"ES256","kid":"k1"}"#,
        r#"{"alg":"HS512"}"#,
    ]);
    let payload = format!(
        r#"{{"sub":"{}","name":"{}","iat":{}}}"#,
        r.digits(8),
        r.pick(SURNAMES),
        1_690_000_000 + r.below(30_000_000)
    );
    format!(
        "{}.{}.{}",
        b64url_encode(header.as_bytes()),
        b64url_encode(payload.as_bytes()),
        r.b64url(43)
    )
}

pub fn api_key(r: &mut Rng) -> String {
    match r.below(11) {
        0 => format!("AKIA{}", r.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
        1 => format!("ghp_{}", r.alnum(36)),
        2 => format!("github_pat_{}_{}", r.alnum(22), r.alnum(59)),
        3 => format!("sk-{}", r.alnum(48)),
        4 => format!("sk-proj-{}", r.b64url(56)),
        5 => format!("xoxb-{}-{}-{}", r.digits(12), r.digits(13), r.alnum(24)),
        6 => format!("AIza{}", r.b64url(35)),
        7 => format!("LTAI5t{}", r.alnum(18)),
        8 => format!("AKID{}", r.alnum(32)),
        9 => format!("glpat-{}", r.b64url(20)),
        _ => format!(
            "hf_{}",
            r.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 34)
        ),
    }
}

fn b64(r: &mut Rng, n: usize) -> String {
    r.from(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        n,
    )
}

pub fn private_key(r: &mut Rng) -> String {
    let kind = *r.pick(&["RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED "]);
    let lines: Vec<String> = (0..r.range(3, 6)).map(|_| b64(r, 64)).collect();
    format!(
        "-----BEGIN {kind}PRIVATE KEY-----\n{}\n{}==\n-----END {kind}PRIVATE KEY-----",
        lines.join("\n"),
        b64(r, 20)
    )
}

fn uuid(r: &mut Rng) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        r.hex(8),
        r.hex(4),
        r.hex(4),
        r.hex(4),
        r.hex(12)
    )
}

fn urlenc_b64(r: &mut Rng, n: usize) -> String {
    let mut s = String::new();
    for _ in 0..n {
        match r.below(20) {
            0 => s.push_str("%2B"),
            1 => s.push_str("%2F"),
            _ => s.push_str(&r.alnum(1)),
        }
    }
    s.push_str("%3D");
    s
}

/// A URL carrying credentials, with the gold spans of its secrets.
pub fn secret_url(r: &mut Rng) -> Filled {
    let mut b = Builder::new();
    match r.below(10) {
        0 => {
            let scheme = *r.pick(&["postgres", "mysql", "redis", "mongodb", "amqp", "https", "ftp"]);
            let user = *r.pick(&["admin", "root", "app", "deploy", "svc_etl"]);
            let n = r.range(6, 12) as usize;
            let pass = format!("{}{}", r.alnum(n), r.pick(&["!", "", "_1", "_x"]));
            let host = *r.pick(&["db.example.com", "10.0.3.17", "cache.internal", "mq.example.cn"]);
            let url = format!("{scheme}://{user}:{pass}@{host}:{}", r.range(1000, 9999));
            b.span("URL_CREDENTIALS", &url)
                .lit(&format!("/{}", r.pick(&["prod", "0", "app", "vhost"])));
        }
        1 => {
            b.lit("https://oapi.dingtalk.com/robot/send?access_token=")
                .span("URL_CREDENTIALS", &r.hex(64));
            if r.chance(0.6) {
                b.lit(&format!("&timestamp=17{}&sign=", r.digits(11)))
                    .span("URL_CREDENTIALS", &urlenc_b64(r, 40));
            }
        }
        2 => {
            b.lit("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=")
                .span("URL_CREDENTIALS", &uuid(r));
        }
        3 => {
            b.lit("https://open.feishu.cn/open-apis/bot/v2/hook/")
                .span("URL_CREDENTIALS", &uuid(r));
        }
        4 => {
            let path = format!(
                "T{}/B{}/{}",
                r.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 8),
                r.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10),
                r.alnum(24)
            );
            b.lit("https://hooks.slack.com/services/")
                .span("URL_CREDENTIALS", &path);
        }
        5 => {
            let t = 1_700_000_000 + r.below(30_000_000);
            b.lit(&format!(
                "https://assets-125{}.cos.ap-guangzhou.myqcloud.com/img/{}.jpg?q-sign-algorithm=sha1&q-sign-time={t};{}&q-key-time={t};{}&q-header-list=host&q-url-param-list=&q-signature=",
                r.digits(7),
                r.lower_alnum(6),
                t + 3600,
                t + 3600
            ))
            .span("URL_CREDENTIALS", &r.hex(40));
        }
        6 => {
            b.lit(&format!(
                "https://reports.s3.amazonaws.com/{}.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=",
                r.lower_alnum(8)
            ))
            .span(
                "API_KEY",
                &format!("AKIA{}", r.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
            )
            .lit("%2F20231205%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20231205T020000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=")
            .span("URL_CREDENTIALS", &r.hex(64));
        }
        7 => {
            b.lit(&format!(
                "https://static-{}.oss-cn-hangzhou.aliyuncs.com/{}.png?OSSAccessKeyId=",
                r.lower_alnum(4),
                r.lower_alnum(6)
            ))
            .span("API_KEY", &format!("LTAI5t{}", r.alnum(18)))
            .lit(&format!("&Expires=17{}&Signature=", r.digits(8)))
            .span("URL_CREDENTIALS", &urlenc_b64(r, 26));
        }
        8 => {
            b.lit("https://api.example.com/pay/notify?appid=")
                .span("URL_CREDENTIALS", &format!("wx{}", r.hex(16)))
                .lit(&format!("&mch_id=1{}&sign=", r.digits(9)))
                .span("URL_CREDENTIALS", &r.hex(32).to_uppercase());
        }
        _ => {
            b.lit(&format!(
                "https://{}.example.com/callback?session=",
                r.pick(&["app", "sso", "portal"])
            ))
            .span("URL_CREDENTIALS", &jwt(r))
            .lit("&next=%2Fhome");
        }
    }
    b.done()
}

// ------------------------------------------------------------ look-alikes

fn date8(r: &mut Rng) -> String {
    let y = r.range(2015, 2025);
    let m = r.range(1, 12);
    format!("{y}{m:02}{:02}", r.range(1, 28))
}

pub fn order_no(r: &mut Rng) -> String {
    match r.below(5) {
        0 => format!("{}{}", date8(r), r.digits(8)),
        1 => format!("{}{}", date8(r), r.digits(10)),
        2 => format!("SO-{}-{}", date8(r), r.digits(4)),
        3 => {
            let n = r.range(9, 12) as usize;
            format!("{}{}", r.range(1, 9), r.digits(n))
        }
        _ => format!("{}{}", date8(r), r.digits(6)),
    }
}

/// An 11-digit number that looks like a mobile (for order numbers and arithmetic).
pub fn mobile_like(r: &mut Rng) -> String {
    format!("{}{}", r.pick(MOBILE_PREFIXES), r.digits(8))
}

pub fn tracking(r: &mut Rng) -> String {
    match r.below(6) {
        0 => format!("SF{}", r.digits(13)),
        1 => format!("YT{}", r.digits(13)),
        2 => format!("JD{}", r.digits(13)),
        3 => format!("75{}", r.digits(12)),
        4 => format!(
            "1Z{}{}",
            r.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 6),
            r.digits(10)
        ),
        _ => r.digits(12),
    }
}

pub fn timestamp(r: &mut Rng) -> String {
    let t = 1_500_000_000 + r.below(250_000_000) as u64;
    match r.below(5) {
        0 => t.to_string(),
        1 => format!("{t}{}", r.digits(3)),
        2 => format!(
            "{}-{:02}-{:02} {:02}:{:02}:{:02}",
            r.range(2015, 2025),
            r.range(1, 12),
            r.range(1, 28),
            r.range(0, 23),
            r.range(0, 59),
            r.range(0, 59)
        ),
        3 => format!("{}{}", date8(r), r.digits(6)),
        _ => format!(
            "{}-{:02}-{:02}T{:02}:{:02}:00+08:00",
            r.range(2015, 2025),
            r.range(1, 12),
            r.range(1, 28),
            r.range(0, 23),
            r.range(0, 59)
        ),
    }
}

pub fn price(r: &mut Rng) -> String {
    match r.below(5) {
        0 => format!("¥{},{}.00", r.range(1, 99), r.digits(3)),
        1 => format!("${}.{}", r.range(1, 9999), r.digits(2)),
        2 => format!("{}.{} 元", r.range(10, 99999), r.digits(2)),
        3 => format!("{},{},{} 元", r.range(1, 99), r.digits(3), r.digits(3)),
        _ => format!("{}{} 元", r.range(1, 9), r.digits(10)),
    }
}

pub fn isbn(r: &mut Rng) -> String {
    let body = format!("9787{}{}", r.range(100, 999), r.digits(5));
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(i, b)| (b - b'0') as u32 * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    let c = (10 - sum % 10) % 10;
    let full = format!("{body}{c}");
    match r.below(3) {
        0 => full,
        1 => format!("978-7-{}-{}-{c}", &body[4..7], &body[7..12]),
        _ => format!("7-{}-{}-{}", &body[4..7], &body[7..12], r.digits(1)),
    }
}

pub fn version(r: &mut Rng) -> String {
    match r.below(5) {
        0 => format!("v{}.{}.{}", r.range(1, 20), r.range(0, 30), r.range(0, 9999)),
        1 => format!("10.0.{}.{}", r.range(10000, 22999), r.range(1, 4000)),
        2 => format!(
            "{}.0.{}.{}",
            r.range(90, 130),
            r.range(1000, 6999),
            r.range(10, 250)
        ),
        3 => format!(
            "{}.{}.{}.{}",
            r.range(1, 9),
            r.range(0, 9),
            r.range(0, 9),
            r.range(0, 99)
        ),
        _ => format!(
            "{}.{}.{}-beta.{}",
            r.range(0, 5),
            r.range(0, 30),
            r.range(0, 20),
            r.range(1, 9)
        ),
    }
}

// --------------------------------------------------------------- templates

/// Fill one `{slot}`.
fn fill(slot: &str, r: &mut Rng) -> Filled {
    match slot {
        "phone" => whole("PHONE", mobile(r)),
        "landline" => whole("LANDLINE", landline(r)),
        "landline_plain" => whole("LANDLINE", landline_plain(r)),
        "cn_id" => whole("CN_ID", cn_id(r)),
        "card" => whole("BANK_CARD", card(r)),
        "email" => whole("EMAIL", email(r)),
        "email_cjk" => whole("EMAIL", email_cjk(r)),
        "ip" => whole("IP", if r.chance(0.75) { ipv4(r) } else { ipv6(r) }),
        "ipv4" => whole("IP", ipv4(r)),
        "passport" => whole("PASSPORT", passport(r)),
        "qq" => whole("QQ", qq(r)),
        "wechat" => whole("WECHAT", wechat(r)),
        "secret_url" => secret_url(r),
        "jwt" => whole("API_KEY", jwt(r)),
        "api_key" => whole("API_KEY", api_key(r)),
        "private_key" => whole("PRIVATE_KEY", private_key(r)),
        // look-alikes
        "id_bad" => plain(cn_id_bad(r)),
        "card_bad" => plain(card_bad(r)),
        "order" => plain(order_no(r)),
        "mobile_like" => plain(mobile_like(r)),
        "tracking" => plain(tracking(r)),
        "ts" => plain(timestamp(r)),
        "price" => plain(price(r)),
        "isbn" => plain(isbn(r)),
        "version" => plain(version(r)),
        "n" => plain(r.range(2, 99).to_string()),
        "n5" => {
            let n = r.range(4, 8) as usize;
            plain(format!("{}{}", r.range(1, 9), r.digits(n)))
        }
        "n9" => plain(format!("{}{}", r.range(1, 9), r.digits(8))),
        "hex40" => plain(r.hex(40)),
        "uuid" => plain(uuid(r)),
        "word16" => plain(format!(
            "{}_{}_{}",
            r.pick(SURNAMES),
            r.pick(GIVEN),
            r.pick(&["summer", "newsletter", "campaign", "december"])
        )),
        "luhn16" => plain({
            let body = format!("4{}", r.digits(14));
            let c = luhn_digit(&body);
            format!("{body}{c}")
        }),
        "model" => plain(format!("E{}", r.digits(8))),
        "landline_like" => plain(format!("0{}-{}", r.range(100, 999), r.range(1000, 9999))),
        other => panic!("unknown slot {other}"),
    }
}

fn expand(tpl: &str, r: &mut Rng) -> Filled {
    let mut b = Builder::new();
    let mut rest = tpl;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').expect("closed slot");
        b.lit(&rest[..open]);
        let (text, spans) = fill(&rest[open + 1..close], r);
        let base = b.s.chars().count();
        b.s.push_str(&text);
        b.spans
            .extend(spans.into_iter().map(|(t, s, e)| (t, base + s, base + e)));
        rest = &rest[close + 1..];
    }
    b.lit(rest);
    b.done()
}

/// (type, lang, template) of the tune part.
pub const POS_TUNE: &[(&str, &str, &str)] = &[
    ("PHONE", "zh", "有问题可以直接打我手机{phone}，白天晚上都行。"),
    ("PHONE", "zh", "收货人：王先生，联系方式 {phone}，地址见备注。"),
    (
        "PHONE",
        "en",
        "Feel free to text me at {phone} if anything changes.",
    ),
    ("PHONE", "zh", "报名热线：{phone}（张老师）或 {phone}（李老师）"),
    (
        "PHONE",
        "en",
        "Contact: Ms. Li, mobile {phone}, available on weekdays.",
    ),
    (
        "LANDLINE",
        "zh",
        "办公室电话是{landline}，工作日九点到五点有人接听。",
    ),
    ("LANDLINE", "zh", "如需预约，请致电 {landline} 转前台。"),
    (
        "LANDLINE",
        "en",
        "Our Hangzhou office can be reached at {landline} during business hours.",
    ),
    ("LANDLINE", "zh", "座机：{landline_plain}；传真：{landline}"),
    ("LANDLINE", "en", "Tel: {landline}   Fax: {landline}"),
    ("CN_ID", "zh", "本人身份证号码{cn_id}，申请补办社保卡。"),
    ("CN_ID", "en", "The applicant's resident ID is {cn_id}."),
    ("CN_ID", "zh", "乘车人：李娜 证件号 {cn_id} 座位 08车12F"),
    (
        "BANK_CARD",
        "zh",
        "工资请打到我的卡上：{card}，开户行是招商银行。",
    ),
    (
        "BANK_CARD",
        "en",
        "Please charge the card ending in this number: {card}.",
    ),
    ("BANK_CARD", "zh", "退款账户 {card}（户名：陈静）"),
    ("EMAIL", "zh", "简历请投递至{email}，邮件标题注明岗位。"),
    (
        "EMAIL",
        "en",
        "You can reach the maintainer at {email} or open an issue.",
    ),
    ("EMAIL", "zh", "联系邮箱：{email_cjk}"),
    ("EMAIL", "zh", "抄送 {email}; {email}"),
    ("IP", "zh", "登录日志显示来源地址为{ip}，时间是凌晨。"),
    (
        "IP",
        "en",
        "The attacker connected from {ip} and scanned port 22.",
    ),
    ("IP", "zh", "把 nginx 的 upstream 改成 {ipv4}:8080 就行了。"),
    ("PASSPORT", "zh", "护照号码：{passport}，有效期至二〇三〇年。"),
    (
        "PASSPORT",
        "en",
        "Passport number {passport} was used to book the flight.",
    ),
    ("QQ", "zh", "有兴趣的加我QQ{qq}，备注来意。"),
    ("QQ", "en", "My QQ number is {qq}, add me anytime."),
    ("QQ", "zh", "QQ号码：{qq}（晚上在线）"),
    ("QQ", "zh", "扣扣 {qq} 微信同号"),
    ("WECHAT", "zh", "详情请加微信：{wechat}，注明来意。"),
    ("WECHAT", "en", "Add me on WeChat: {wechat}"),
    ("WECHAT", "zh", "vx {wechat} 备注咨询"),
    (
        "URL_CREDENTIALS",
        "zh",
        "告警机器人地址是 {secret_url} ，别外传。",
    ),
    (
        "URL_CREDENTIALS",
        "en",
        "I set the webhook to {secret_url} and it still fails.",
    ),
    ("URL_CREDENTIALS", "zh", "下载链接（一小时内有效）：{secret_url}"),
    ("API_KEY", "en", "export OPENAI_API_KEY={api_key}"),
    ("API_KEY", "zh", "我的密钥是 {api_key}，为什么一直报 401？"),
    ("API_KEY", "en", "Authorization: Bearer {jwt}"),
    ("API_KEY", "zh", "调试时拿到的 token：{jwt}"),
    (
        "PRIVATE_KEY",
        "en",
        "Here is the key file content:\n{private_key}\nWhy does ssh reject it?",
    ),
    ("PRIVATE_KEY", "zh", "私钥如下：\n{private_key}"),
];

/// (type, lang, template) of the held part: written differently, never looked
/// at while writing the rules.
pub const POS_HELD: &[(&str, &str, &str)] = &[
    (
        "PHONE",
        "zh",
        "我叫刘洋，手机号码是{phone}，麻烦快递到了打个电话。",
    ),
    ("PHONE", "en", "Call or WhatsApp {phone} (ask for Mr. Zhao)."),
    ("PHONE", "zh", "联系人电话{phone}；备用：{phone}"),
    ("PHONE", "en", "If the line is busy, my cell is {phone}."),
    ("LANDLINE", "zh", "投诉电话：{landline}（工作时间）"),
    (
        "LANDLINE",
        "en",
        "For reservations call {landline}, extension desk.",
    ),
    (
        "LANDLINE",
        "zh",
        "学校招生办 {landline}，也可以来电咨询 {landline}。",
    ),
    ("LANDLINE", "zh", "联系电话 {landline_plain} 王老师"),
    ("CN_ID", "zh", "持证人信息：姓名刘洋，公民身份号码 {cn_id}。"),
    (
        "CN_ID",
        "en",
        "Chinese national ID number: {cn_id} (holder: Wang Fang).",
    ),
    ("CN_ID", "zh", "请核对以下信息：{cn_id}，如有误请联系客服。"),
    ("BANK_CARD", "zh", "我的银行卡号是{card}，麻烦帮我查一下余额。"),
    ("BANK_CARD", "en", "Card number: {card}, expiry 08/27."),
    ("BANK_CARD", "zh", "转账至 工商银行 {card} 即可"),
    ("EMAIL", "zh", "有任何问题，欢迎写信给我们（{email}）。"),
    ("EMAIL", "en", "Send your portfolio to {email} by Friday."),
    ("EMAIL", "zh", "邮件地址 {email_cjk} 已停用"),
    ("EMAIL", "en", "cc: {email}, {email}"),
    ("IP", "zh", "服务器IP：{ip}，用户名 root。"),
    ("IP", "en", "ping {ip} returns request timed out."),
    ("IP", "zh", "在防火墙里放行了{ip}之后就能访问了。"),
    ("PASSPORT", "zh", "出境时出示的护照（号码 {passport}）已经过期。"),
    (
        "PASSPORT",
        "en",
        "Traveler: Chen Jing, passport no. {passport}, nationality CN.",
    ),
    ("QQ", "zh", "我的qq是{qq}，周末一般都在。"),
    ("QQ", "en", "you can find me on QQ: {qq}"),
    ("QQ", "zh", "群主扣扣号为 {qq}，有事私聊。"),
    ("QQ", "en", "QQ ID {qq} - that's my account."),
    ("WECHAT", "zh", "微信号是{wechat}，加的时候说明一下。"),
    ("WECHAT", "en", "WeChat ID: {wechat} (same as my nickname)."),
    ("WECHAT", "zh", "v信：{wechat}"),
    ("URL_CREDENTIALS", "zh", "脚本里写死了 {secret_url}，这样安全吗？"),
    (
        "URL_CREDENTIALS",
        "en",
        "curl -X POST '{secret_url}' -d @payload.json",
    ),
    ("URL_CREDENTIALS", "zh", "日志里打印出了回调地址：{secret_url}"),
    ("API_KEY", "zh", "配置文件：api_key = \"{api_key}\""),
    ("API_KEY", "en", "Leaked credential found in the repo: {api_key}"),
    ("API_KEY", "en", "The cookie holds {jwt} until logout."),
    ("API_KEY", "zh", "请求头带上 {jwt} 就能访问了"),
    (
        "PRIVATE_KEY",
        "zh",
        "把下面的内容保存成 id_rsa：\n{private_key}\n然后 chmod 600。",
    ),
    ("PRIVATE_KEY", "en", "```\n{private_key}\n```"),
];

/// Hard negatives (lang, template) of the tune part.
pub const NEG_TUNE: &[(&str, &str)] = &[
    ("zh", "您的订单号{order}已发货，预计三天内送达。"),
    ("zh", "订单编号：{mobile_like}，请妥善保存。"),
    (
        "en",
        "Order #{order} has been shipped; tracking number {tracking}.",
    ),
    ("zh", "快递单号 {tracking}，可在官网查询。"),
    ("zh", "身份证号 {id_bad} 校验失败，请重新输入。"),
    ("en", "The test card {card_bad} was declined (checksum error)."),
    ("zh", "时间戳 {ts} 对应的北京时间是多少？"),
    ("en", "The log line was written at {ts}."),
    ("zh", "这台电脑售价{price}，比上个月便宜。"),
    ("en", "Total due: {price} including tax."),
    ("zh", "这本书的ISBN是{isbn}，可以在图书馆借到。"),
    ("en", "Cite it as ISBN {isbn}."),
    ("zh", "请升级到 {version} 版本后再试。"),
    ("en", "Tested on Windows {version} and Chrome {version}."),
    ("zh", "计算 {mobile_like} ÷ {n} 的结果，保留两位小数。"),
    ("zh", "{mobile_like} 乘以 {n} 等于多少？"),
    ("en", "What is {mobile_like} divided by {n}?"),
    ("zh", "请判断 {mobile_like} 是不是质数。"),
    ("en", "Compute {mobile_like} + {mobile_like} and show your work."),
    ("zh", "求 {luhn16} 除以 {n} 的余数。"),
    ("zh", "我的QQ空间访问量已经超过{n5}了。"),
    ("zh", "欢迎加入QQ群 {n9} 一起讨论。"),
    ("zh", "QQ音乐 {version} 新增了歌词翻译。"),
    ("en", "Search results: ?page={n}&sort=desc&utm_source={word16}"),
    ("en", "The commit {hex40} fixed the race; request id {uuid}."),
    ("zh", "区号 {landline_like} 不是有效的电话格式。"),
    ("zh", "统计显示共有{n9}人参加，占比{n}%。"),
    ("zh", "产品型号 {model} 已停产，请选购新款。"),
    ("zh", "把 logo@2x.png 换成矢量图，再执行 npm i vue@{version}。"),
];

/// Hard negatives (lang, template) of the held part.
pub const NEG_HELD: &[(&str, &str)] = &[
    ("zh", "交易流水号：{order}，如有疑问请保留此号码。"),
    ("zh", "运单号{mobile_like}的包裹已签收。"),
    ("en", "Invoice no. {order} is due next week."),
    ("en", "Your parcel {tracking} is out for delivery."),
    ("zh", "这个号码 {id_bad} 的最后一位不对，不是合法的身份证。"),
    ("zh", "卡号 {card_bad} 未通过校验。"),
    ("en", "Unix time {ts} corresponds to a Monday."),
    ("zh", "记录创建于 {ts}，最后修改于 {ts}。"),
    ("zh", "本季度营收{price}，同比增长{n}%。"),
    ("en", "The house sold for {price} last spring."),
    ("zh", "《算法导论》ISBN：{isbn}"),
    ("en", "ISBN-13: {isbn}"),
    ("en", "Bumped the dependency from {version} to {version}."),
    ("zh", "固件版本号 {version}，发布于去年。"),
    ("zh", "已知 a = {mobile_like}，b = {n}，求 a × b。"),
    (
        "en",
        "Multiply {mobile_like} by {n} and round to the nearest thousand.",
    ),
    ("zh", "{mobile_like} - {mobile_like} = ?"),
    ("zh", "把{mobile_like}分解质因数。"),
    ("en", "Is {mobile_like} divisible by {n}?"),
    ("zh", "{luhn16} × {n} 的个位数是几？"),
    ("zh", "QQ浏览器 {version} 修复了若干问题。"),
    ("zh", "QQ群号：{n9}（学习交流）"),
    ("zh", "QQ等级 {n} 级需要多少天？QQ会员 {n5} 积分能换什么？"),
    ("en", "GET /search?q=hello&lang=en&ref={word16}"),
    ("en", "sha1 {hex40}, trace {uuid}"),
    ("zh", "营业时间 {landline_like} 点，周末休息。"),
    ("en", "The stadium holds {n9} people, about {n}% of the city."),
    ("en", "Part number {model} is out of stock."),
    (
        "en",
        "Use the @Deprecated annotation and pin react@{version} in package.json.",
    ),
];

/// Carrier sentences: (even-indexed, odd-indexed) Chinese and English sentences
/// without digits, `@`, URLs or contact cue words.
pub struct Carriers {
    pub zh: [Vec<String>; 2],
    pub en: [Vec<String>; 2],
}

fn clean_sentence(s: &str) -> bool {
    let n = s.chars().count();
    let low = s.to_lowercase();
    (8..=90).contains(&n)
        && !s
            .chars()
            .any(|c| c.is_ascii_digit() || ('０'..='９').contains(&c))
        && !s.contains(['@', '=', '/', ':', '：', '\\', '{', '}', '<', '>', '#'])
        && ![
            "qq",
            "扣扣",
            "微信",
            "wechat",
            "weixin",
            "wx",
            "vx",
            "护照",
            "passport",
            "身份证",
            "证件",
            "id",
            "电话",
            "手机",
            "phone",
            "tel",
            "call",
            "email",
            "邮箱",
            "token",
            "key",
            "密钥",
            "计算",
            "乘",
            "除",
            "等于",
            "质数",
            "单号",
            "订单",
            "编号",
            "isbn",
            "版本",
            "version",
        ]
        .iter()
        .any(|w| low.contains(w))
}

fn split_sentences(text: &str, zh: bool, out: &mut Vec<String>) {
    let mut cur = String::new();
    for c in text.chars() {
        if c == '\n' {
            cur.clear();
            continue;
        }
        cur.push(c);
        let end = if zh {
            matches!(c, '。' | '！' | '？')
        } else {
            matches!(c, '.' | '!' | '?')
        };
        if end {
            let s = cur.trim().to_string();
            let ok_lang = if zh {
                s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
            } else {
                s.is_ascii() && s.starts_with(|c: char| c.is_ascii_uppercase())
            };
            if ok_lang && clean_sentence(&s) {
                out.push(s);
            }
            cur.clear();
        }
    }
}

fn read_outputs(path: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Vec<serde_json::Value> = serde_json::from_str(&text).ok()?;
    Some(
        v.iter()
            .filter_map(|r| r["output"].as_str().map(String::from))
            .collect(),
    )
}

const BUILTIN_ZH: &[&str] = &[
    "今天的会议推迟到下午。",
    "这份报告还需要再修改一下。",
    "天气转凉，注意添衣。",
    "我们已经收到了您的反馈。",
    "这个问题之前也有人遇到过。",
    "周末的活动照常进行。",
    "谢谢大家的耐心等待。",
    "新同事下周一入职。",
];
const BUILTIN_EN: &[&str] = &[
    "The meeting has been moved to the afternoon.",
    "Thanks for your patience while we sort this out.",
    "The report still needs a second review.",
    "Please keep this information private.",
    "We will follow up with more details soon.",
    "The weather has been unusually warm this week.",
    "Let me know if you have any questions.",
    "The new version of the guide is almost ready.",
];

impl Carriers {
    /// Sentences from the shared SFT sets; built-in ones when they are absent.
    pub fn load(shared: &Path) -> Carriers {
        let mut zh = Vec::new();
        let mut en = Vec::new();
        if let Some(outs) =
            read_outputs(&shared.join("alpaca_zh_hikariming/translated/zh_00000-03252_proofread_done.json"))
        {
            for o in outs.iter().take(3000) {
                split_sentences(o, true, &mut zh);
            }
        }
        if let Some(outs) = read_outputs(&shared.join("alpaca_en/alpaca_data.json")) {
            for o in outs.iter().take(3000) {
                split_sentences(o, false, &mut en);
            }
        }
        if zh.len() < 100 {
            zh = BUILTIN_ZH.iter().map(|s| s.to_string()).collect();
        }
        if en.len() < 100 {
            en = BUILTIN_EN.iter().map(|s| s.to_string()).collect();
        }
        let halves = |v: Vec<String>| {
            let mut a = Vec::new();
            let mut b = Vec::new();
            for (i, s) in v.into_iter().enumerate() {
                if i % 2 == 0 {
                    a.push(s)
                } else {
                    b.push(s)
                }
            }
            [a, b]
        };
        Carriers {
            zh: halves(zh),
            en: halves(en),
        }
    }

    fn pick(&self, lang: &str, held: bool, r: &mut Rng) -> String {
        let v = if lang == "zh" { &self.zh } else { &self.en };
        r.pick(&v[held as usize]).clone()
    }
}

fn wrap(
    core: Filled,
    lang: &str,
    held: bool,
    carriers: &Carriers,
    r: &mut Rng,
) -> (String, Vec<(String, usize, usize)>) {
    let sep = if lang == "zh" { "" } else { " " };
    let mut text = String::new();
    if r.chance(0.6) {
        text.push_str(&carriers.pick(lang, held, r));
        text.push_str(sep);
    }
    let base = text.chars().count();
    text.push_str(&core.0);
    let gold = core
        .1
        .into_iter()
        .map(|(t, s, e)| (t.to_string(), base + s, base + e))
        .collect();
    if r.chance(0.6) {
        text.push_str(sep);
        text.push_str(&carriers.pick(lang, held, r));
    }
    (text, gold)
}

/// The whole set: `per_template` texts for each positive template and
/// `per_negative` for each negative one, in both parts.
pub fn generate(seed: u64, per_template: usize, per_negative: usize, carriers: &Carriers) -> Vec<Case> {
    let mut r = Rng::new(seed);
    let mut out = Vec::new();
    for held in [false, true] {
        let pos = if held { POS_HELD } else { POS_TUNE };
        let neg = if held { NEG_HELD } else { NEG_TUNE };
        let part = if held { "held" } else { "tune" };
        for (i, &(ty, lang, tpl)) in pos.iter().enumerate() {
            for _ in 0..per_template {
                let mut core = expand(tpl, &mut r);
                // Now and then a look-alike sentence of the same part follows.
                if r.chance(0.3) {
                    let same_lang: Vec<&(&str, &str)> = neg.iter().filter(|n| n.0 == lang).collect();
                    let (_, ntpl) = **r.pick(&same_lang);
                    let extra = expand(ntpl, &mut r);
                    core.0.push_str(if lang == "zh" { "" } else { " " });
                    core.0.push_str(&extra.0);
                }
                let (text, gold) = wrap(core, lang, held, carriers, &mut r);
                out.push(Case {
                    text,
                    gold,
                    held,
                    negative: false,
                    template: format!("{ty}/{part}/{i}"),
                });
            }
        }
        for (i, &(lang, tpl)) in neg.iter().enumerate() {
            for _ in 0..per_negative {
                let core = expand(tpl, &mut r);
                let (text, gold) = wrap(core, lang, held, carriers, &mut r);
                assert!(gold.is_empty());
                out.push(Case {
                    text,
                    gold,
                    held,
                    negative: true,
                    template: format!("NEG/{part}/{i}"),
                });
            }
        }
    }
    out
}
