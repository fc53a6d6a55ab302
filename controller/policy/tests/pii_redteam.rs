//! Issue 14, class 11: PII spelled so that a byte matcher misses it is found, redaction removes the bytes it
//! was spelled with, and addresses, versions and ids that every coding agent sends are not PII.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use paddock_api::Verdict;
use paddock_policy::pii::{PiiType, contains_any, redact, scan};
use paddock_policy::{Event, Mutation, evaluate};
use serde_json::json;
use support::policies;

const ALL: &[PiiType] = &PiiType::ALL;

/// The kinds found in `text`, and that `contains_any` agrees.
#[track_caller]
fn kinds(text: &str) -> Vec<PiiType> {
    let found: Vec<PiiType> = scan(text, ALL).iter().map(|f| f.kind).collect();
    assert_eq!(contains_any(text, ALL), !found.is_empty(), "contains_any disagrees on {text:?}");
    found
}

/// `spelling` (which spells `kind`) is found inside a sentence, as exactly one finding, and redacting it
/// leaves the sentence around it and nothing of the spelling.
#[track_caller]
fn caught(kind: PiiType, spelling: &str) {
    let text = format!("see {spelling} now");
    let f = scan(&text, ALL);
    assert_eq!(f.iter().map(|f| f.kind).collect::<Vec<_>>(), vec![kind], "{spelling:?}: {f:?}");
    assert_eq!(redact(&text, &f), format!("see [REDACTED:{kind}] now"), "{spelling:?}");
    assert!(contains_any(&text, &[kind]), "{spelling:?}");
}

#[track_caller]
fn clean(text: &str) {
    let f = scan(text, ALL);
    assert!(f.is_empty(), "{text:?}: {:?}", f.iter().map(|f| (f.rule, &text[f.start..f.end])).collect::<Vec<_>>());
    assert!(!contains_any(text, ALL), "{text:?}");
}

// --- e-mail --------------------------------------------------------------------------------------------

#[test]
fn email_spellings_from_the_issue_and_more_are_caught() {
    for s in [
        "alice@example.com",
        "alice\u{200B}@example.com",          // zero-width space
        "ali\u{200C}ce@exa\u{200D}mple.com",  // zero-width non-joiner and joiner
        "alice@\u{2060}example.com",          // word joiner
        "alice@\u{FEFF}example.com",          // BOM
        "ali\u{AD}ce@exam\u{AD}ple.com",      // soft hyphens
        "alice＠example.com",                 // full-width @
        "alice@example．com",                 // full-width dot
        "ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", // full-width throughout
        "аlice@ехаmple.com",                  // Cyrillic а, е, х
        "alicе@εxample.cοm",                  // Cyrillic е, Greek ε (NFKC keeps it) and ο
        "alice%40example.com",                // percent-encoded
        "alice%2540example.com",              // encoded twice
        "alice&#64;example.com",              // HTML decimal
        "alice&#x40;example.com",             // HTML hex
        "alice&#64example.com",               // HTML without `;`, as browsers read it
        "alice&commat;example.com",           // HTML named
        "alice&#8203;@example.com",           // an encoded zero-width space
        "alice\\u0040example.com",            // JSON / JS escape
        "alice\\u{40}example.com",            // Rust / ES6 escape
        "alice\\x40example.com",              // C escape
        "a\u{301}lice@example.com",           // a combining mark
        "alice@bücher.de",                    // IDN domain
        "josé.müller@exämple.com",            // Unicode local part
        "пользователь@пример.рф",             // Cyrillic address and TLD
        "用户@例子.中国",                     // CJK address
        "alice@xn--bcher-kva.de",             // punycode domain
        "alice@example.xn--p1ai",             // punycode TLD
    ] {
        caught(PiiType::Email, s);
    }
}

#[test]
fn not_addresses_stay_clean() {
    for s in [
        "git clone git@github.com:owner/repo.git",
        "icon@2x.png",
        "npm i lodash@4.17.21",
        "@Override public String toString()",
        "a%20b%2Fc%3Fd=1&e=2",
        "x &amp;&amp; y &lt;z&gt;",
        "Grüße aus München, Привет мир, こんにちは世界 🙂",
        "let s = \"\\u{1F600} \\x41\";",
    ] {
        clean(s);
    }
}

// --- cards ---------------------------------------------------------------------------------------------

#[test]
fn card_spellings_from_the_issue_and_more_are_caught() {
    for s in [
        "4111111111111111",
        "4111.1111.1111.1111",
        "4111/1111/1111/1111",
        "4111\t1111\t1111\t1111",
        "4111\n1111\n1111\n1111",
        "4111\r\n1111\r\n1111\r\n1111",
        "4111\u{A0}1111\u{A0}1111\u{A0}1111",       // NBSP
        "4111\u{202F}1111\u{2007}1111\u{3000}1111", // narrow NBSP, figure space, ideographic space
        "4111–1111–1111–1111",                      // en dash
        "4111—1111−1111‐1111",                      // em dash, minus, hyphen
        "4111 - 1111 - 1111 - 1111",
        "4111 1111-1111.1111",                      // mixed
        "４１１１ １１１１ １１１１ １１１１",      // full-width digits
        "٤١١١ ١١١١ ١١١١ ١١١١",                      // Arabic-Indic digits
        "۴۱۱۱۱۱۱۱۱۱۱۱۱۱۱۱",                         // extended Arabic-Indic
        "४१११ ११११ ११११ ११११",                      // Devanagari
        "𝟒𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏",                      // mathematical bold
        "4111 1111 11111111",                       // 4-4-8
        "41111111 11111111",                        // 8-8
        "4111\u{200B}1111\u{200B}1111\u{200B}1111", // zero-width spaces between groups
        "4111&#45;1111&#45;1111&#45;1111",          // encoded dashes
        "4111%201111%201111%201111",                // encoded spaces
        "3782 822463 10005",                        // Amex 4-6-5
        "5555.5555.5555.4444",
    ] {
        caught(PiiType::CreditCard, s);
    }
    // Glued to a short word: the digits are the card.
    for s in ["cc4111111111111111", "card4111111111111111", "CC4111 1111 1111 1111"] {
        let text = format!("see {s} now");
        let f = scan(&text, ALL);
        assert_eq!(f.len(), 1, "{s}: {f:?}");
        assert_eq!(
            (f[0].kind, &text[f[0].start..f[0].end].replace(' ', "")[..]),
            (PiiType::CreditCard, "4111111111111111")
        );
    }
}

#[test]
fn luhn_invalid_numbers_are_not_cards_however_spelled() {
    for s in [
        "4111111111111112",
        "4111.1111.1111.1112",
        "4111\u{A0}1111\u{A0}1111\u{A0}1112",
        "４１１１ １１１１ １１１１ １１１２",
        "٤١١١ ١١١١ ١١١١ ١١١٢",
        "cc4111111111111112",
        "4111 1111 11111112",
    ] {
        clean(&format!("see {s} now"));
    }
}

// --- SSN -----------------------------------------------------------------------------------------------

#[test]
fn ssn_spellings_are_caught() {
    for s in [
        "123-45-6789",
        "123.45.6789",
        "123–45–6789",
        "123—45—6789",
        "123 45 6789",
        "123\u{A0}45\u{A0}6789",
        "１２３-４５-６７８９",
        "123&#45;45&#45;6789",
        "123\u{200B}-45-6789",
    ] {
        caught(PiiType::Ssn, s);
    }
}

#[test]
fn versions_standards_and_ids_with_trailing_letters_are_not_ssns() {
    for s in [
        "id: 123-45-6789-abc",
        "ref 123-45-6789_x",
        "ref 123-45-6789.v2",
        "order-123-45-6789",
        "version 123.45.6789",
        "\"version\": \"123.45.6789\"",
        "build 123-45-6789",
        "123-45-6789abc",
        "IEEE 802.11-2016 and 802.11-2012",
        "123-45.6789",
    ] {
        clean(s);
    }
}

// --- IBAN ----------------------------------------------------------------------------------------------

#[test]
fn iban_spellings_are_caught() {
    for s in [
        "GB82WEST12345698765432",
        "gb82west12345698765432",
        "Gb82West12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "gb82 west 1234 5698 7654 32",
        "GB82-WEST-1234-5698-7654-32",
        "gb82-west-1234-5698-7654-32",
        "DE89.3704.0044.0532.0130.00",
        "DE89/3704/0044/0532/0130/00",
        "DE89 37040044 0532013000",
        "GB82\u{A0}WEST\u{A0}1234\u{A0}5698\u{A0}7654\u{A0}32",
        "GB82 WЕST 1234 5698 7654 32", // Cyrillic Е
        "ＧＢ８２ＷＥＳＴ１２３４５６９８７６５４３２",
        "GB82–WEST–1234–5698–7654–32",
    ] {
        caught(PiiType::Iban, s);
    }
}

#[test]
fn ibans_with_a_wrong_checksum_are_not_caught() {
    for s in [
        "GB83WEST12345698765432",
        "gb83west12345698765432",
        "GB83-WEST-1234-5698-7654-32",
        "de88 3704 0044 0532 0130 00",
    ] {
        clean(&format!("see {s} now"));
    }
}

// --- secrets -------------------------------------------------------------------------------------------

#[test]
fn a_token_split_or_disguised_is_caught() {
    let t = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
    for s in [
        t.to_string(),
        format!("{}\u{200B}{}", &t[..10], &t[10..]),
        format!("{}\u{AD}{}", &t[..20], &t[20..]),
        t.replacen("_", "%5F", 1),
        t.replacen("_", "&lowbar;", 1),
        t.replacen("o", "о", 1), // Cyrillic о in the body
        t.replacen("g", "ｇ", 1),
    ] {
        caught(PiiType::Secret, &s);
    }
}

// --- IP addresses --------------------------------------------------------------------------------------

#[test]
fn addresses_from_everyday_coding_work_are_not_personal_data() {
    for s in [
        "0.0.0.0:8080",
        "127.0.0.1:8080",
        "172.17.0.0/16",
        "8.8.8.8",
        "version 2.0.0.1",
        "__version__ = '2.0.0.1'",
        "\"version\": \"1.2.3.4\"",
        "Release: 4.3.2.1",
        "listening on http://127.0.0.1:5432",
        "ports: [\"127.0.0.1:5432:5432\"]",
        "docker network create --subnet 172.20.0.0/16 net",
        "nameserver 1.1.1.1\nnameserver 9.9.9.9\nnameserver 8.8.4.4",
        "inet 192.168.1.23/24 brd 192.168.1.255 scope global wlan0",
        "inet 10.244.0.12  netmask 255.255.255.0  broadcast 10.244.0.255",
        "metadata at http://169.254.169.254/latest/",
        "mdns 224.0.0.251:5353",
        "route 52.0.0.0/8",
        "see 192.0.2.10, 198.51.100.7 and 203.0.113.42 in RFC 5737",
        "listen [::]:443",
        "ping6 ::1",
        "fe80::1ff:fe23:4567:890a%eth0",
        "fd00:ec2::254",
        "2001:db8:85a3::8a2e:370:7334",
        "dns 2001:4860:4860::8888 and 2606:4700:4700::1111",
        "::ffff:10.0.0.1",
        "2a00:1450::/32",
    ] {
        clean(s);
    }
}

#[test]
fn public_addresses_are_still_found() {
    for s in ["81.2.69.160", "93.184.216.34", "2a00:1450:4001:82a::200e", "８１.２.６９.１６０", "81%2E2%2E69%2E160"]
    {
        caught(PiiType::IpAddress, s);
    }
    assert_eq!(kinds("ssh root@81.2.69.160"), vec![PiiType::IpAddress]);
}

// --- the rule: documents, redaction, the whole request -------------------------------------------------

fn event(yaml: &str) -> Event {
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn llm_request(body: serde_json::Value) -> Event {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    Event { messages, body: Some(body), ..event("{phase: llm_request}") }
}

fn anthropic_document(text: &str, media_type: &str) -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "summarise the attached file"},
        {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": B64.encode(text)}}
    ]}]})
}

#[test]
fn base64_document_text_is_scanned_in_every_wire_format() {
    let ps = policies(&[("pii", "rules: [{name: p, use: deny_pii_in_llm_request}]")]);
    let secret = "customer: alice@example.com, card 4111 1111 1111 1111";
    let bodies = [
        anthropic_document(secret, "text/plain"),
        anthropic_document(secret, "application/octet-stream"),
        json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_file", "filename": "c.txt", "file_data": format!("data:text/plain;base64,{}", B64.encode(secret))}
        ]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"filename": "c.csv", "file_data": format!("data:text/csv;base64,{}", B64.encode(secret))}}
        ]}]}),
    ];
    for body in bodies {
        let d = evaluate(&llm_request(body.clone()), &Default::default(), &ps);
        assert_eq!(d.verdict, Verdict::Deny, "{body}");
        assert!(d.reason.contains("email") && d.reason.contains("credit_card"), "{}", d.reason);
    }
    // The same documents without PII, and an image whose bytes happen to spell an address, pass.
    let ok = anthropic_document("fn main() { println!(\"hi\"); }", "text/plain");
    assert_eq!(evaluate(&llm_request(ok), &Default::default(), &ps).verdict, Verdict::Allow);
    let image = anthropic_document("alice@example.com", "image/png");
    assert_eq!(evaluate(&llm_request(image), &Default::default(), &ps).verdict, Verdict::Allow);
}

#[test]
fn redaction_removes_the_original_spelling_and_re_encodes_documents() {
    let ps = policies(&[("pii", "rules: [{name: p, use: deny_pii_in_llm_request, with: {action: redact}}]")]);
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "mail alice%40example.com or bob\u{200B}@example.org, SSN 123–45–6789"},
        {"role": "user", "content": [{"type": "document", "source": {"type": "base64", "media_type": "text/plain",
            "data": B64.encode("card ４１１１ １１１１ １１１１ １１１１ on file")}}]}
    ]});
    let d = evaluate(&llm_request(body), &Default::default(), &ps);
    assert_eq!(d.verdict, Verdict::Allow, "{}", d.reason);
    // Three in the text, one in the document; each counted in `messages` and in `body`.
    assert_eq!(d.mutations, vec![Mutation::Redact { findings: 8 }]);
    let out = d.event.expect("rewritten");
    let body = out.body.unwrap();
    assert_eq!(
        body["messages"][0]["content"], "mail [REDACTED:email] or [REDACTED:email], SSN [REDACTED:ssn]",
        "the decoded and the invisible characters went with the match"
    );
    let data = body["messages"][1]["content"][0]["source"]["data"].as_str().unwrap();
    let decoded = String::from_utf8(B64.decode(data).unwrap()).unwrap();
    assert_eq!(decoded, "card [REDACTED:credit_card] on file");
    assert_eq!(out.messages[1]["content"][0]["source"]["data"], data);
}

#[test]
fn a_document_too_large_to_read_is_not_let_through() {
    let big = B64.encode(vec![b'a'; paddock_policy::pii::MAX_DOCUMENT_BYTES + 3]);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": big}}
    ]}]});
    for (action, verdict) in [("deny", Verdict::Deny), ("ask", Verdict::Ask), ("redact", Verdict::Ask)] {
        let ps = policies(&[(
            "pii",
            &format!("rules: [{{name: p, use: deny_pii_in_llm_request, with: {{action: {action}}}}}]"),
        )]);
        let d = evaluate(&llm_request(body.clone()), &Default::default(), &ps);
        assert_eq!(d.verdict, verdict, "{action}");
        assert!(d.reason.contains("could not be scanned"), "{}", d.reason);
    }
}

#[test]
fn uuids_and_dotted_names_are_not_ibans() {
    // `ba92…` is Bosnia's code and these 20 characters pass mod-97: the UUID goes on, so it is not an IBAN.
    for s in ["id ba9273f4-96b0-48ae-a68e-0123456789ab", "x-ba9273f4-96b0-48ae-a68e", "ba9273f4-96b0-48ae-a68e.v2"] {
        clean(s);
    }
    caught(PiiType::Iban, "ba9273f4-96b0-48ae-a68e");
}

#[test]
fn the_rule_over_everyday_developer_requests() {
    let ps = policies(&[("pii", "rules: [{name: p, use: deny_pii_in_llm_request}]")]);
    support::check(
        r#"
cases:
  - name: a dev server log, a docker network and a version bump are not personal data
    steps:
      - event:
          phase: llm_request
          messages:
            - {role: user, content: "server listening on 0.0.0.0:8080 and 127.0.0.1:8080; docker0 172.17.0.0/16; dns 8.8.8.8"}
            - {role: user, content: "bump version 2.0.0.1 → 2.0.0.2; id: 123-45-6789-abc; café naïve — ok"}
        expect: allow
  - name: a card with NBSP and an SSN with en dashes are
    steps:
      - {event: {phase: request, text: "card 4111\u00A01111\u00A01111\u00A01111 and SSN 123–45–6789"}, expect: deny, reason_contains: "credit_card, ssn"}
  - name: an address behind a zero-width space is
    steps:
      - {event: {phase: request, text: "write to alice\u200B@example.com"}, expect: deny, reason_contains: email}
"#,
        &ps,
    );
}

#[test]
fn secret_names_and_prefixes_in_look_alike_letters_are_caught() {
    caught(PiiType::Secret, "ＡＫＩＡIOSFODNN7EXAMPLE"); // full-width prefix
    caught(PiiType::Secret, "AKIA\u{200B}IOSFODNN7EXAMPLE");
    for name in ["pаssword", "PASSW\u{AD}ORD", "ѕecret", "tοken"] {
        let text = format!("{name} = \"9fK2mQ7xLp4vR8sT\"");
        let f = scan(&text, ALL);
        assert_eq!(f.len(), 1, "{text}: {f:?}");
        assert_eq!((f[0].kind, &text[f[0].start..f[0].end]), (PiiType::Secret, "9fK2mQ7xLp4vR8sT"), "{text}");
    }
}
