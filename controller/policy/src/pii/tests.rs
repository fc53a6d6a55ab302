//! Unit tests of the detectors, with the private helpers in reach.

use super::*;
use proptest::prelude::*;

const ALL: &[PiiType] = &PiiType::ALL;

/// (kind, rule, matched text) of every finding.
fn found(text: &str) -> Vec<(PiiType, &'static str, &str)> {
    scan(text, ALL).into_iter().map(|f| (f.kind, f.rule, &text[f.start..f.end])).collect()
}

/// The one finding in `text`.
#[track_caller]
fn one(text: &str) -> (PiiType, &'static str, &str) {
    let f = found(text);
    assert_eq!(f.len(), 1, "expected one finding in {text:?}, got {f:?}");
    f[0]
}

#[track_caller]
fn none(text: &str) {
    assert_eq!(found(text), vec![], "expected no finding in {text:?}");
    assert!(!contains_any(text, ALL), "contains_any disagrees on {text:?}");
}

/// `payload` + its Luhn check digit, by the textbook formula.
fn with_check_digit(payload: &str) -> String {
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = (c - b'0') as u32;
            if i % 2 == 0 {
                let x = d * 2;
                x / 10 + x % 10
            } else {
                d
            }
        })
        .sum();
    format!("{payload}{}", (10 - sum % 10) % 10)
}

fn luhn_reference(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().map(|c| c.to_digit(10).unwrap()).collect();
    let mut total = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        total += if i % 2 == 1 { [0, 2, 4, 6, 8, 1, 3, 5, 7, 9][*d as usize] } else { *d };
    }
    total % 10 == 0
}

/// ISO 7064 mod 97-10 the long way: letters to numbers in a decimal string, then 9 digits at a time.
fn iban_mod97_reference(iban: &str) -> u64 {
    let rearranged = format!("{}{}", &iban[4..], &iban[..4]);
    let numeric: String = rearranged
        .chars()
        .map(|c| if c.is_ascii_digit() { c.to_string() } else { (c as u32 - 'A' as u32 + 10).to_string() })
        .collect();
    let mut rem = String::new();
    for chunk in numeric.as_bytes().chunks(7) {
        let s = format!("{rem}{}", std::str::from_utf8(chunk).unwrap());
        rem = (s.parse::<u64>().unwrap() % 97).to_string();
    }
    rem.parse().unwrap()
}

// --- API basics ---------------------------------------------------------------------------------

#[test]
fn type_names_match_serde() {
    for t in PiiType::ALL {
        assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.as_str()));
        assert_eq!(serde_json::from_value::<PiiType>(serde_json::json!(t.as_str())).unwrap(), t);
        assert_eq!(t.to_string(), t.as_str());
    }
    assert_eq!(PiiType::CreditCard.as_str(), "credit_card");
    assert_eq!(PiiType::IpAddress.as_str(), "ip_address");
}

#[test]
fn only_requested_types_are_reported() {
    let text = "mail alice@example.com, call 415-555-0100, host 93.184.216.34";
    let f = scan(text, &[PiiType::Phone]);
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].kind, &text[f[0].start..f[0].end]), (PiiType::Phone, "415-555-0100"));
    assert!(scan(text, &[]).is_empty());
    assert!(!contains_any(text, &[PiiType::Ssn, PiiType::Secret]));
    assert!(contains_any(text, &[PiiType::IpAddress]));
    assert_eq!(scan(text, ALL).len(), 3);
}

// --- credit cards -------------------------------------------------------------------------------

#[test]
fn luhn_valid_test_cards_fire() {
    for (card, brand) in [
        ("4111 1111 1111 1111", "visa"),
        ("5555 5555 5555 4444", "mastercard"),
        ("3782 822463 10005", "amex"),
        ("6011 1111 1111 1117", "discover"),
        ("4111-1111-1111-1111", "visa"),
        ("4111111111111111", "visa"),
        ("2221000000000009", "mastercard"),
        ("3530111333300000", "jcb"),
        ("3056 930902 5904", "diners"),
        ("6200000000000005", "unionpay"),
    ] {
        let text = format!("pay with {card}, thanks");
        assert_eq!(one(&text), (PiiType::CreditCard, brand, card), "{card}");
    }
}

#[test]
fn cards_with_one_digit_changed_do_not_fire() {
    for card in ["4111 1111 1111 1112", "5555 5555 5555 4445", "3782 822463 10006", "6011 1111 1111 1118"] {
        none(&format!("pay with {card}"));
    }
}

#[test]
fn non_iin_and_glued_numbers_do_not_fire() {
    for prefix in ["1234 5678 9012 345", "9999 9999 9999 999", "7000 0000 0000 000", "8123 4567 8901 234"] {
        let card = with_check_digit(&prefix.replace(' ', ""));
        assert!(luhn_valid(&card));
        none(&format!("id {card} and {prefix}{}", &card[15..]));
    }
    none("ts=1714557600123 ms"); // 13-digit epoch millis: no IIN starts with 1
    assert_eq!(one("x4111111111111111").2, "4111111111111111"); // glued to a short word: still a card
    none("x1234567890123452"); // glued, but no IIN
    none("41111111111111110"); // 17 digits: no Visa length
    none("4111111111111111.25"); // a decimal number
}

// --- IBAN ---------------------------------------------------------------------------------------

#[test]
fn ibans_fire_and_checksums_matter() {
    for iban in ["GB82 WEST 1234 5698 7654 32", "DE89 3704 0044 0532 0130 00", "FR14 2004 1010 0505 0001 3M02 606"] {
        assert!(iban_valid(iban), "{iban}");
        assert_eq!(one(&format!("IBAN: {iban}.")), (PiiType::Iban, "iban", iban));
        let compact = iban.replace(' ', "");
        assert!(iban_valid(&compact));
        assert_eq!(one(&format!("\"{compact}\"")), (PiiType::Iban, "iban", compact.as_str()));
        // A changed check digit.
        let bad = format!("{}{}{}", &iban[..3], (iban.as_bytes()[3] - b'0' + 1) % 10, &iban[4..]);
        assert!(!iban_valid(&bad), "{bad}");
        none(&format!("IBAN: {bad}."));
    }
    assert!(iban_valid("gb82west12345698765432"));
    assert!(!iban_valid("GB82 WEST 1234 5698 7654 3")); // length
    assert!(!iban_valid("ZZ82WEST12345698765432")); // unknown country
    assert!(!iban_valid("GB82-WEST-1234-5698-7654-32"));
    assert!(!iban_valid(""));
    // The country's length ends the IBAN: what follows is not part of it.
    assert_eq!(one("GB82 WEST 1234 5698 7654 32 99").2, "GB82 WEST 1234 5698 7654 32");
    none("GB82 WEST 1234 5698 7654 3"); // too short
    // Any grouping and separator: the country's length and the checksum decide.
    assert_eq!(one("GB82 WEST 12345 698 7654 32").2, "GB82 WEST 12345 698 7654 32");
}

// --- SSN ----------------------------------------------------------------------------------------

#[test]
fn ssns() {
    assert_eq!(one("SSN 123-45-6789."), (PiiType::Ssn, "ssn", "123-45-6789"));
    assert_eq!(one("ssn: 078 05 1120"), (PiiType::Ssn, "ssn", "078 05 1120"));
    for bad in ["000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-4567", "123-45-0000"] {
        none(&format!("SSN {bad}"));
    }
    none("ssn 123456789"); // unformatted: too many ids look like this
    none("1234-56-7890");
    none("123-45-67890");
    none("A-123-45-6789");
    none("123-45-6789-1");
    none("12 123 45 6789 1");
}

// --- phone --------------------------------------------------------------------------------------

#[test]
fn phones() {
    for p in ["+1 (415) 555-0100", "+14155550100", "+44 20 7946 0958", "+49-30-1234567", "+33.1.23.45.67.89"] {
        assert_eq!(one(&format!("call {p} now")), (PiiType::Phone, "e164", p), "{p}");
    }
    for p in ["(415) 555-0100", "(415)555-0100", "415-555-0100", "415.555.0100", "1-415-555-0100"] {
        assert_eq!(one(&format!("call {p}.")), (PiiType::Phone, "nanp", p), "{p}");
    }
}

#[test]
fn phone_like_numbers_that_are_not_phones() {
    none("order 100-555-0199 shipped"); // NANP area codes never start with 0 or 1
    none("ref 123-456-7890");
    none("ORD-415-555-0100"); // an order number glued to its prefix
    none("SKU 415-555-01000");
    none("call 415 555 0100"); // space-separated NANP: too close to ordinary number lists
    none("id 4155550100 and ts 1714557600");
    none("2024-05-01T12:34:56+05:30");
    none("+1234 points");
    none("x+14155550100");
    assert_eq!(one("81.168.100.200").0, PiiType::IpAddress); // an address, not a 3-3-4 phone number
    none("192.168.100.200"); // a private address: consumed, not a phone number either
    // Documented: a bare `#415-555-0100` is indistinguishable from a phone number and fires.
    assert_eq!(one("#415-555-0100").0, PiiType::Phone);
}

// --- IP addresses -------------------------------------------------------------------------------

#[test]
fn ipv4() {
    for ip in ["93.184.216.34", "81.2.69.160", "1.2.3.40", "11.0.0.1", "172.32.0.1", "223.255.255.254"] {
        assert_eq!(one(&format!("host {ip}.")), (PiiType::IpAddress, "ipv4", ip), "{ip}");
    }
    assert_eq!(one("http://81.2.69.160:8080/x").2, "81.2.69.160");
    assert_eq!(one("route 52.95.110.1/32").2, "52.95.110.1"); // a /32 is one host
    for ip in ["127.0.0.1", "10.0.0.1", "192.168.1.254", "8.8.8.8", "255.255.255.255", "0.0.0.0"] {
        none(&format!("host {ip}."));
    }
    none("cidr 52.0.0.0/8");
    none("bump 2.0.0.1 → 2.0.0.2"); // four single digits: a version
    assert_eq!(one("bump 1.0.0.12").2, "1.0.0.12"); // with no version word, a public address
    none("version 1.0.0.12");
    for not in ["1.2.3.4.5", "v1.2.3.4", "256.1.1.1", "01.02.03.04", "1.2.3", "x.1.2.3.4", "1.2.3.4a"] {
        none(&format!("see {not} here"));
    }
}

#[test]
fn ipv6() {
    for ip in [
        "2a00:1450:4001:82a::200e",
        "2a01:4f8:0:0:1:0:0:1",
        "2a01:04f8:0c17:0000:0000:8a2e:0370:7334",
        "::ffff:81.2.69.160",
        "2607:f8b0:4004:800::200e",
    ] {
        assert_eq!(one(&format!("addr {ip}.")), (PiiType::IpAddress, "ipv6", ip), "{ip}");
    }
    assert_eq!(one("curl http://[2a00:1450:4001:82a::200e]:443/").2, "2a00:1450:4001:82a::200e");
    assert_eq!(one("ping 2a00:1450:4001:82a::200e%eth0").2, "2a00:1450:4001:82a::200e");
    // Documentation, link-local, unique-local, mapped private, resolvers, networks: not a person's.
    for ip in
        ["2001:db8::1", "fe80::1ff:fe23:4567:890a", "fd12:3456:789a::1", "::ffff:192.0.2.1", "2001:4860:4860::8888"]
    {
        none(&format!("addr {ip}."));
    }
    none("prefix 2a00:1450::/32");
    for not in [
        "::",
        "::1",
        "a::b",
        "dead::beef",
        "use std::net::Ipv6Addr;",
        "let x = u32::MAX;",
        "xs[1::2]",
        "12:34:56",
        "00:1a:2b:3c:4d:5e",
        "at 2024-05-01T12:34:56.789Z",
        "x2001:db8::1",
    ] {
        none(not);
    }
}

// --- e-mail -------------------------------------------------------------------------------------

#[test]
fn emails() {
    assert_eq!(one("mail alice@example.com."), (PiiType::Email, "email", "alice@example.com"));
    assert_eq!(one("<Bob.Smith+tag@mail.example.co.uk>").2, "Bob.Smith+tag@mail.example.co.uk");
    assert_eq!(one("mailto:alice@example.com").2, "alice@example.com");
    assert_eq!(one("{\"email\":\"carol_99@sub-domain.example.org\"}").2, "carol_99@sub-domain.example.org");
    for not in [
        "git clone git@github.com:owner/repo.git", // SSH remote
        "ssh://git@github.com/owner/repo",
        "https://user@example.com/path",
        "@Override",
        "npm i @types/node lodash@4.17.21",
        "ping user@localhost",
        "icon@2x.png",
        "a@b.c",
        "trailing.@example.com",
        "a..b@example.com",
    ] {
        none(not);
    }
}

// --- secrets ------------------------------------------------------------------------------------

fn secret(text: &str) -> (&'static str, &str) {
    let (kind, rule, m) = one(text);
    assert_eq!(kind, PiiType::Secret, "{text}");
    (rule, m)
}

const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

#[test]
fn aws_keys() {
    assert_eq!(secret("key = \"AKIAIOSFODNN7EXAMPLE\";"), ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"));
    assert_eq!(secret("ASIAY34FZKBOKMUTVV7A").0, "aws_access_key_id");
    none("AKIAIOSFODNN7EXAMPL");
    none("AKIAIOSFODNN7EXAMPLEX");
    none("AKIAiosfodnn7example");
    none("XAKIAIOSFODNN7EXAMPLE");

    let json = format!(r#"{{"output": "AWS_SECRET_ACCESS_KEY={AWS_SECRET}"}}"#);
    assert_eq!(secret(&json), ("aws_secret_access_key", AWS_SECRET));
    assert_eq!(secret(&format!("aws_secret_access_key = {AWS_SECRET}\n")).0, "aws_secret_access_key");
    assert_eq!(secret(&format!("export AWS_SECRET_ACCESS_KEY=\"{AWS_SECRET}\"")).1, AWS_SECRET);
    assert_eq!(secret(&format!("{{ secretAccessKey: '{AWS_SECRET}' }}")).0, "aws_secret_access_key");
    // Near misses: 39 characters is no AWS secret (the generic rule may still see a random string), and a
    // reference is not a value.
    assert_ne!(secret(&format!("aws_secret_access_key = {}", &AWS_SECRET[..39])).0, "aws_secret_access_key");
    none("aws_secret_access_key = ${AWS_SECRET_ACCESS_KEY}");
}

#[test]
fn github_tokens() {
    let t = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
    assert_eq!(secret(&format!("git push https://{t}@github.com/o/r")), ("github_token", t));
    assert_eq!(secret(&format!("GITHUB_TOKEN={t}")), ("github_token", t)); // beats generic_secret
    for p in ["gho_", "ghu_", "ghs_", "ghr_"] {
        let t = format!("{p}{}", &t[4..]);
        assert_eq!(secret(&format!("`{t}`")).0, "github_token");
    }
    none(&format!("ghp_{}", &t[5..])); // 35
    none(&format!("{t}x")); // 37
    let body = "11ABCDEFG0123456789abcd_".repeat(4);
    let pat = format!("github_pat_{}", &body[..82]);
    assert_eq!(secret(&format!("{pat}\n")), ("github_pat", pat.as_str()));
    none(&format!("github_pat_{}", &body[..81]));
}

#[test]
fn openai_and_anthropic_keys() {
    let proj = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_Q-7";
    assert_eq!(secret(&format!("OPENAI_API_KEY={proj}")), ("openai_api_key", proj));
    assert_eq!(secret(&format!("new OpenAI({{ apiKey: \"{proj}\" }})")), ("openai_api_key", proj));
    let legacy = format!("sk-{}", "aB3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6hIj9kLm2n");
    assert_eq!(legacy.len(), 51);
    assert_eq!(secret(&format!("key: {legacy}")).0, "openai_api_key");
    none(&legacy[..50]);
    none("sk-proj-short-name");
    none("sk-proj-all-lowercase-words-without-digits");
    none("the task-runner and risk-averse desk-bound folk");

    let body = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_Q-7".repeat(3);
    let ant = format!("sk-ant-api03-{}AA", &body[..93]);
    assert_eq!(secret(&format!("x-api-key: {ant}\n")), ("anthropic_api_key", ant.as_str()));
    let admin = format!("sk-ant-admin01-{}AA", &body[..93]);
    assert_eq!(secret(&format!("\"{admin}\"")).0, "anthropic_admin_key");
    none("sk-ant-api03-abc");
}

#[test]
fn slack_stripe_google() {
    let slack = "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";
    assert_eq!(secret(&format!("SLACK={slack} ")), ("slack_token", slack));
    assert_eq!(secret("xapp-1-A0123456789-1234567890123-abcdef0123456789").0, "slack_token");
    none("xoxb-not-a-real-token-at-all");

    let stripe = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
    assert_eq!(secret(&format!("Stripe::API.key = '{stripe}'")), ("stripe_key", stripe));
    assert_eq!(secret("rk_live_4eC39HqLyjWDarjtT1zdp7dcXYZ").0, "stripe_key");
    none("sk_live_4eC39HqLyjWDarjt");
    none("sk_test_4eC39HqLyjWDarjtT1zdp7dc");

    let google = "AIzaSyA-1234567890abcdefghijklmnopqrstu";
    assert_eq!(secret(&format!("?key={google}&q=1")), ("google_api_key", google));
    none(&google[..38]);
}

#[test]
fn private_keys() {
    let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0";
    let pem = format!("-----BEGIN RSA PRIVATE KEY-----\n{body}\n{body}\n-----END RSA PRIVATE KEY-----");
    assert_eq!(secret(&format!("cat id_rsa\n{pem}\n$ ")), ("private_key", pem.as_str()));
    // Inside a JSON tool result, newlines escaped.
    let json = serde_json::json!({"output": pem}).to_string();
    let (rule, m) = secret(&json);
    assert_eq!(rule, "private_key");
    assert!(m.starts_with("-----BEGIN RSA") && m.ends_with("PRIVATE KEY-----"));
    // Truncated: through the end of the body.
    let cut = format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n{body}\n");
    assert_eq!(secret(&cut).1, cut.trim_end());
    none(&format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----"));
    none(&format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----"));
    none("grep for -----BEGIN PRIVATE KEY----- lines");
    none("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----");
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

#[test]
fn jwts() {
    assert_eq!(secret(&format!("Authorization: Bearer {JWT}\r\n")), ("jwt", JWT));
    assert_eq!(secret(&format!("{{\"id_token\": \"{JWT}\"}}")), ("jwt", JWT)); // beats generic_secret
    // Header without "alg", two segments, five segments.
    none("eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2lnbmF0dXJl");
    none("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0");
    none(&format!("{JWT}.eyJhbGci.c2ln"));
}

#[test]
fn generic_secrets() {
    assert_eq!(secret("DB_PASSWORD=9fK2mQ7xLp4vR8sT\n"), ("generic_secret", "9fK2mQ7xLp4vR8sT"));
    assert_eq!(secret(r#"{"api_key": "a8Fk29dLq0Zx7Vb3Nm5T"}"#).1, "a8Fk29dLq0Zx7Vb3Nm5T");
    assert_eq!(secret(r#"{"output": "{\"clientSecret\": \"Qm9vW2x7Lp0sT4rE8yU1\"}"}"#).1, "Qm9vW2x7Lp0sT4rE8yU1");
    assert_eq!(secret("password: 'Tr0ub4dor&3xK9#mQ'").1, "Tr0ub4dor&3xK9#mQ");
    assert_eq!(secret("let api_key = \"Zk8#pL2@vN5!qR7x\";").1, "Zk8#pL2@vN5!qR7x");
    assert_eq!(secret("curl 'https://x.test/v1?token=Ab12Cd34Ef56Gh78Ij90&q=2'").1, "Ab12Cd34Ef56Gh78Ij90");
    for not in [
        "password = \"changeme\"",
        "password = \"aaaaaaaaaaaaaaaaaaaaaaaa\"",
        "password = \"${DB_PASSWORD}\"",
        "secret: \"{{ secrets.API_TOKEN }}\"",
        "token = tokenizer.encode(text, add_special_tokens=True)",
        "api_key=settings.OPENAI_API_KEY_V2",
        "API_KEY=OPENAI_API_KEY_2",
        "\"max_tokens\": 4096,",
        "token_url = \"https://oauth2.googleapis.com/token\"",
        "\"token_file\": \"/var/run/secrets/kubernetes.io/serviceaccount/token\"",
        "secretName: tls-secret-2024-prod",
        "if password == \"Zk8pL2vN5qR7xW3y\" {",
        "password: the quick brown fox jumps over 12 lazy dogs",
        "\"password\": \"correct horse battery staple 42\"",
        "token: xxxxxxxxxxxxxxxxxxxxxxxx1",
        "let secret = compute_secret(&key);",
        "Token::Ident(name) => { ... }",
    ] {
        none(not);
    }
}

#[test]
fn url_passwords() {
    assert_eq!(secret("DATABASE_URL=postgres://admin:s3cr3tP4ss@db.internal:5432/app"), ("url_password", "s3cr3tP4ss"));
    none("https://user@example.com/path");
    none("redis://:${REDIS_PASSWORD}@cache:6379");
    none("https://user:****@example.com");
}

#[test]
fn secrets_inside_code() {
    let code = format!(
        "fn client() -> Client {{\n    // TODO: move to vault\n    let key = \"AKIAIOSFODNN7EXAMPLE\";\n    let secret = \"{AWS_SECRET}\";\n    Client::new(key, secret)\n}}\n"
    );
    let f = found(&code);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0], (PiiType::Secret, "aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"));
    assert_eq!((f[1].0, f[1].2), (PiiType::Secret, AWS_SECRET)); // generic: the name has no `aws`
}

// --- no false positives on ordinary developer text -----------------------------------------------

#[test]
fn no_false_positives_on_ids_versions_and_times() {
    let text = r#"
Request 550e8400-e29b-41d4-a716-446655440000 (trace 123e4567-e89b-12d3-a456-426614174000) finished in 12.5 ms.
commit 3f9a2c1b7d8e4f6a9b0c1d2e3f4a5b6c7d8e9f0a, parent 9fceb02d0ae598e95dc970b74767f19372d61af8 (HEAD -> main)
Bumped serde from 1.0.197 to 1.0.203, tokio 1.37.0, version 2.0.0-rc.1+build.5, node v20.11.1.
At 2024-05-01T12:34:56.789Z and 2024-05-01 12:34:56+00:00 (epoch 1714566896, 1714566896789 ms).
{"id": 184467, "price": 1299.99, "qty": 3, "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
let total: u64 = items.iter().map(|i| i.price * i.qty).sum(); assert!(x <= u32::MAX as u64);
for i in 0..=255 { buf[i] = (i * 31 % 256) as u8; } // 0x1F, 0xDEADBEEF
The meeting is at 10:30; room 4.12; page 23-45; ISBN 978-3-16-148410-0; tel. ext 1234.
max_tokens: 4096, "temperature": 0.7, "top_p": 0.95, "tokens_used": 18234567
"#;
    none(text);
}

#[test]
fn addresses_that_are_nobody_s_do_not_fire() {
    // Loopback, private, unspecified, link-local: where a developer's own services listen.
    for s in ["listening on 127.0.0.1:3000", "bind 0.0.0.0:8080", "docker0 172.17.0.0/16", "169.254.169.254"] {
        none(s);
    }
    assert_eq!(one("listening on 81.2.69.160:3000").2, "81.2.69.160");
}

// --- output shape -------------------------------------------------------------------------------

#[test]
fn redact_replaces_findings() {
    let text = "email alice@example.com and card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE.";
    let f = scan(text, ALL);
    assert_eq!(redact(text, &f), "email [REDACTED:email] and card [REDACTED:credit_card], key [REDACTED:secret].");
    assert_eq!(redact(text, &[]), text);
    // Findings not from `scan` are skipped, not a panic.
    let bogus = [Finding { kind: PiiType::Email, rule: "email", start: 3, end: 999 }];
    assert_eq!(redact(text, &bogus), text);
}

#[test]
fn multibyte_text_around_findings() {
    let text = "Grüße — écrivez à alice@example.com → carte 4111 1111 1111 1111 日本 81.2.69.160 ✓ ☎ +49 30 1234567 🙂";
    let f = scan(text, ALL);
    let got: Vec<&str> = f.iter().map(|f| &text[f.start..f.end]).collect();
    assert_eq!(got, ["alice@example.com", "4111 1111 1111 1111", "81.2.69.160", "+49 30 1234567"]);
    assert!(f.windows(2).all(|w| w[0].end <= w[1].start));
    assert_eq!(
        redact(text, &f),
        "Grüße — écrivez à [REDACTED:email] → carte [REDACTED:credit_card] 日本 [REDACTED:ip_address] ✓ ☎ [REDACTED:phone] 🙂"
    );
}

#[test]
fn overlaps_keep_the_longer_then_the_more_specific() {
    // A generic value that is a JWT: one finding, the specific rule.
    assert_eq!(found(&format!("token = \"{JWT}\"")), vec![(PiiType::Secret, "jwt", JWT)]);
    // IPv4 inside an IPv6 address: one finding.
    assert_eq!(found("::ffff:81.2.69.160").len(), 1);
    let text = "a 4111 1111 1111 1111 b 415-555-0100 c alice@example.com d 81.2.69.160 e";
    let f = scan(text, ALL);
    assert!(f.windows(2).all(|w| w[0].end <= w[1].start && w[0].start < w[1].start));
}

// --- properties ---------------------------------------------------------------------------------

const COUNTRIES: &[&str] = &["GB", "DE", "FR", "NL", "NO", "BE", "MT", "RU", "LC", "CH", "ES", "PL", "BR"];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("4111".to_string()),
        Just(" ".to_string()),
        Just("-".to_string()),
        Just(".".to_string()),
        Just(":".to_string()),
        Just("@".to_string()),
        Just("+1".to_string()),
        Just("(".to_string()),
        Just("\"".to_string()),
        Just("=".to_string()),
        Just("é".to_string()),
        Just("日本".to_string()),
        Just("🙂".to_string()),
        Just("eyJhbGciOiJIUzI1NiJ9".to_string()),
        Just("sk-".to_string()),
        Just("AKIA".to_string()),
        Just("GB82".to_string()),
        Just("password=".to_string()),
        Just("example.com".to_string()),
        Just("::".to_string()),
        Just("-----BEGIN PRIVATE KEY-----".to_string()),
        Just("-----END PRIVATE KEY-----".to_string()),
        Just("%40".to_string()),
        Just("&#64;".to_string()),
        Just("\\u0040".to_string()),
        Just("\u{200B}".to_string()),
        Just("\u{A0}".to_string()),
        Just("–".to_string()),
        Just("＠".to_string()),
        Just("٤".to_string()),
        Just("е".to_string()),
        "[0-9]{1,5}",
        "[a-zA-Z0-9_]{1,12}",
        "[a-f0-9:]{1,8}",
        any::<char>().prop_map(String::from),
    ]
}

fn check_invariants(text: &str) -> Result<(), TestCaseError> {
    let f = scan(text, ALL);
    for x in &f {
        prop_assert!(x.start < x.end && x.end <= text.len());
        prop_assert!(text.get(x.start..x.end).is_some(), "{x:?} is not on char boundaries");
    }
    prop_assert!(f.windows(2).all(|w| w[0].end <= w[1].start), "overlap or disorder: {f:?}");
    prop_assert_eq!(contains_any(text, ALL), !f.is_empty());
    let _ = redact(text, &f);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn luhn_agrees_with_reference(s in "[0-9]{1,40}") {
        prop_assert_eq!(luhn_valid(&s), luhn_reference(&s));
    }

    #[test]
    fn luhn_rejects_non_digits(s in "[0-9]{0,8}[^0-9][0-9]{0,8}") {
        prop_assert!(!luhn_valid(&s));
    }

    #[test]
    fn appending_the_check_digit_makes_luhn_valid(s in "[0-9]{0,30}") {
        prop_assert!(luhn_valid(&with_check_digit(&s)));
    }

    #[test]
    fn iban_agrees_with_reference(c in 0..COUNTRIES.len(), check in "[0-9]{2}", bban in "[A-Z0-9]{30}") {
        let cc = COUNTRIES[c];
        let len = iban_len(cc.as_bytes()[0], cc.as_bytes()[1]).unwrap();
        let iban = format!("{cc}{check}{}", &bban[..len - 4]);
        prop_assert_eq!(iban_valid(&iban), iban_mod97_reference(&iban) == 1);
        // The right check digits make it valid, in compact and print form.
        let r = iban_mod97_reference(&format!("{cc}00{}", &bban[..len - 4]));
        let good = format!("{cc}{:02}{}", 98 - r, &bban[..len - 4]);
        prop_assert!(iban_valid(&good), "{}", good);
        let spaced: Vec<String> = good.as_bytes().chunks(4).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
        let spaced = spaced.join(" ");
        prop_assert!(iban_valid(&spaced));
        let f = scan(&format!("pay to {spaced} today"), &[PiiType::Iban]);
        prop_assert_eq!(f.len(), 1);
    }

    #[test]
    fn scan_never_panics_on_unicode(s in any::<String>()) {
        check_invariants(&s)?;
    }

    #[test]
    fn scan_never_panics_on_pii_shaped_soup(parts in prop::collection::vec(fragment(), 0..48)) {
        check_invariants(&parts.concat())?;
    }
}
