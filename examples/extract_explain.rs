//! Print how the `extract` stage sees one page: its blocks (mark, letters, weight,
//! owner element) and the chosen container. The page is read and decoded as
//! `curate run` reads `.html` files.
//!
//!     cargo run --release --example extract_explain -- PAGE.html

fn main() {
    let path = std::env::args().nth(1).expect("usage: extract_explain PAGE.html");
    let bytes = std::fs::read(&path).expect("readable page");
    let decoded = curate::io::html::decode_html(&bytes);
    eprintln!("decoded as {} ({})", decoded.encoding, decoded.via);
    print!("{}", curate::extract::explain(&decoded.text));
}
