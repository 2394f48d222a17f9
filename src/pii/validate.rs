//! Checks of a candidate's value alone, without the text around it: a real
//! calendar date; a Chinese resident ID's province code, birth date and ISO 7064
//! check digit; a bank card's length, issuer prefix and Luhn checksum. They keep
//! order numbers, timestamps and other long digit runs from being taken for IDs
//! and cards.

/// Province-level codes of the resident ID's first two digits.
const PROVINCES: &[u32] = &[
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54,
    61, 62, 63, 64, 65, 71, 81, 82, 91,
];

/// A real calendar date (Gregorian leap years).
pub fn valid_date(y: u32, m: u32, d: u32) -> bool {
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

fn num(s: &str) -> u32 {
    s.parse().unwrap_or(0)
}

fn valid_region(s: &str) -> bool {
    PROVINCES.contains(&num(&s[..2])) && &s[2..6] != "0000"
}

/// The ISO 7064 MOD 11-2 check character of the first 17 digits of a resident ID.
pub fn cn_id_check_char(first17: &str) -> Option<char> {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    if first17.len() != 17 || !first17.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first17.bytes().zip(W).map(|(b, w)| (b - b'0') as u32 * w).sum();
    Some(b"10X98765432"[(sum % 11) as usize] as char)
}

/// An 18-character resident ID: region, birth date (1900..=`max_year`), check digit.
pub fn valid_cn_id18(s: &str, max_year: u32) -> bool {
    if s.len() != 18 || !s.is_ascii() {
        return false;
    }
    let (y, m, d) = (num(&s[6..10]), num(&s[10..12]), num(&s[12..14]));
    valid_region(s)
        && (1900..=max_year).contains(&y)
        && valid_date(y, m, d)
        && cn_id_check_char(&s[..17]) == Some(s.as_bytes()[17].to_ascii_uppercase() as char)
}

/// A 15-digit legacy resident ID: region and a 19YY birth date (no check digit).
pub fn valid_cn_id15(s: &str) -> bool {
    s.len() == 15
        && s.bytes().all(|b| b.is_ascii_digit())
        && valid_region(s)
        && valid_date(1900 + num(&s[6..8]), num(&s[8..10]), num(&s[10..12]))
}

/// The Luhn checksum over a digit string.
pub fn luhn(digits: &str) -> bool {
    if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = (b - b'0') as u32;
            if i % 2 == 1 {
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
    sum.is_multiple_of(10)
}

/// A card number (separators allowed): length, issuer prefix, Luhn, and not a resident ID.
pub fn valid_card(s: &str, max_year: u32) -> bool {
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    let n = d.len();
    let p2 = num(&d[..2.min(n)]);
    let p4 = num(&d[..4.min(n)]);
    let prefix_ok = match n {
        15 => p2 == 34 || p2 == 37,
        16..=19 => {
            d.starts_with('4') && (n == 16 || n == 19)
                || (51..=55).contains(&p2) && n == 16
                || (2221..=2720).contains(&p4) && n == 16
                || d.starts_with("62")
                || d.starts_with("6011")
                || d.starts_with("65")
                || (644..=649).contains(&num(&d[..3]))
                || (3528..=3589).contains(&p4)
        }
        _ => false,
    };
    prefix_ok && luhn(&d) && !(n == 18 && valid_cn_id18(&d, max_year))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digit_and_luhn_helpers() {
        assert_eq!(cn_id_check_char("11010119900307457"), Some('3'));
        assert_eq!(cn_id_check_char("44030520000229123"), Some('2'));
        assert_eq!(cn_id_check_char("1101011990030745"), None);
        assert!(valid_cn_id18("110101199003074573", 2025));
        assert!(!valid_cn_id18("110101199003074574", 2025), "wrong check digit");
        assert!(valid_cn_id18("440305200002291232", 2025), "leap day 2000");
        assert!(!valid_cn_id18("990101199003074573", 2025), "no province 99");
        assert!(valid_date(2024, 2, 29) && !valid_date(2023, 2, 29) && !valid_date(1900, 2, 29));
        assert!(!valid_date(2023, 4, 31) && !valid_date(2023, 13, 1));
        assert!(valid_cn_id15("110101900307457"));
        assert!(!valid_cn_id15("110101901307457"), "month 13");
        assert!(luhn("4111111111111111") && !luhn("4111111111111112"));
        assert!(luhn("6222022914177763174") && luhn("370008063608371") && luhn("79927398713"));
        assert!(valid_card("4111 1111 1111 1111", 2025));
        assert!(valid_card("370008063608371", 2025), "Amex 15");
        assert!(!valid_card("7111111111111111", 2025), "no issuer 7");
        assert!(
            !valid_card("110101199003074573", 2025),
            "a resident ID is not a card"
        );
    }
}
