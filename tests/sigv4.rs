//! `specter serve --aws-sign bedrock`: the client's SigV4 signature (made for the gateway's host)
//! is replaced by one made with the gateway's credentials over the request the upstream receives.
//! The signature is checked here by an independent implementation of the SigV4 algorithm
//! (hmac + sha2), recomputed from the request exactly as it arrived at the mock upstream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::serve;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hmac::{KeyInit as _, Mac as _};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serve::Served;
use sha2::{Digest as _, Sha256};

const KEY_ID: &str = "AKIDSPECTERSIGV4TEST";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYspecterSECRET";
const TOKEN: &str = "session-token-specter-2718";
const MODEL_PATH: &str = "/model/amazon.nova-micro-v1%3A0/converse";

/// A request as the upstream received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/{path}")).unwrap()
}

async fn upstream() -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let address = serve::http_server(move |r: Request<Incoming>| {
        let log = log.clone();
        async move {
            let method = r.method().to_string();
            let path_and_query = r.uri().path_and_query().unwrap().to_string();
            let headers = r
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
            log.lock().unwrap().push(Received {
                method,
                path_and_query,
                headers,
                body,
            });
            let mut response = Response::new(Full::new(Bytes::from(fixture(
                "bedrock/converse_tool_use/response.json",
            ))));
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    })
    .await;
    (address, seen)
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// RFC 3986 encoding of everything but the unreserved characters.
fn uri_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The SigV4 signature of `request` per the AWS documentation ("Create a signed AWS API
/// request"): canonical request (each path segment encoded again, as for every service but S3),
/// string to sign, derived key.
fn expected_signature(
    request: &Received,
    signed_headers: &str,
    scope: &str,
    secret: &str,
) -> String {
    let (path, query) = request
        .path_and_query
        .split_once('?')
        .unwrap_or((&request.path_and_query, ""));
    let canonical_uri: Vec<String> = path.split('/').map(uri_encode).collect();
    let mut query_pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    query_pairs.sort();
    let canonical_query: Vec<String> = query_pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<&str> = request
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .collect();
        assert!(
            !values.is_empty(),
            "signed header `{name}` was not received"
        );
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        canonical_uri.join("/"),
        canonical_query.join("&"),
        canonical_headers,
        signed_headers,
        sha256_hex(&request.body)
    );
    let amz_date = request.header("x-amz-date").unwrap();
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let parts: Vec<&str> = scope.split('/').collect();
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), parts[0]);
    let k_region = hmac(&k_date, parts[1]);
    let k_service = hmac(&k_region, parts[2]);
    let k_signing = hmac(&k_service, "aws4_request");
    hex::encode(hmac(&k_signing, &string_to_sign))
}

/// The fields of `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
fn authorization_fields(value: &str) -> BTreeMap<String, String> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .unwrap_or_else(|| panic!("not a SigV4 authorization: {value}"));
    rest.split(", ")
        .map(|field| {
            let (k, v) = field.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_requests_are_re_signed_with_the_gateways_credentials() {
    let (address, seen) = upstream().await;
    let upstream = format!("bedrock=http://{address}");
    let served = Served::start_async(
        &[
            "--upstream",
            &upstream,
            "--aws-sign",
            "bedrock",
            "--no-traces-file",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", TOKEN),
            ("AWS_REGION", "us-west-2"),
        ],
    )
    .await;
    assert!(
        served.lines().iter().any(|l| l
            == "specter: re-signing `bedrock` requests with AWS SigV4 for service `bedrock` in us-west-2"),
        "{:#?}",
        served.lines()
    );
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = fixture("bedrock/converse_tool_use/request.json");
    // What an SDK signed for the gateway's own host: useless upstream, and replaced.
    let request = Request::post(served.url(&format!("/bedrock{MODEL_PATH}?trace=on&a=1")))
        .header("content-type", "application/json")
        .header("x-amz-date", "20200101T000000Z")
        .header("x-amz-security-token", "client-token")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=CLIENTKEY/20200101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
        )
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let got = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        got.as_ref(),
        fixture("bedrock/converse_tool_use/response.json").as_slice()
    );

    let received = seen.lock().unwrap()[0].clone();
    assert_eq!(
        received.path_and_query,
        format!("{MODEL_PATH}?trace=on&a=1")
    );
    assert_eq!(received.body, body, "the body is forwarded unchanged");
    let authorization = received.header("authorization").unwrap();
    let fields = authorization_fields(authorization);
    let amz_date = received.header("x-amz-date").unwrap();
    assert_ne!(
        amz_date, "20200101T000000Z",
        "the client's date is replaced"
    );
    assert_eq!(received.header("x-amz-security-token"), Some(TOKEN));
    let scope = format!("{}/us-west-2/bedrock/aws4_request", &amz_date[..8]);
    assert_eq!(fields["Credential"], format!("{KEY_ID}/{scope}"));
    let signed_headers = &fields["SignedHeaders"];
    for header in ["host", "x-amz-date", "x-amz-security-token", "content-type"] {
        assert!(
            signed_headers.split(';').any(|h| h == header),
            "{header} is signed: {signed_headers}"
        );
    }
    assert_eq!(
        fields["Signature"],
        expected_signature(&received, signed_headers, &scope, SECRET),
        "the signature verifies over the request the upstream received"
    );
    assert_ne!(
        fields["Signature"],
        expected_signature(&received, signed_headers, &scope, "another secret"),
        "the check depends on the secret"
    );

    let lines = served.stop_async().await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("specter: aws.bedrock chat amazon.nova-micro-v1:0 in=")),
        "one span for the call: {lines:#?}"
    );
    for secret in [SECRET, TOKEN, "client-token"] {
        assert!(
            !lines.iter().any(|l| l.contains(secret)),
            "`{secret}` stays out of the log"
        );
    }
}

#[test]
fn aws_sign_errors_say_what_to_do() {
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_specter"));
        command.args(["serve", "--listen", "127.0.0.1:0", "--no-traces-file"]);
        command.args(args);
        for key in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
        ] {
            command.env_remove(key);
        }
        command.envs(envs.iter().copied());
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2));
        String::from_utf8(output.stderr).unwrap()
    };
    assert_eq!(
        run(&["--aws-sign", "bedrock"], &[]),
        "error: --aws-sign needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment (profiles, SSO and instance roles are not read)\n"
    );
    let keys = [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    assert_eq!(
        run(&["--aws-sign", "openai"], &keys),
        "error: provider `openai` has no `upstream.aws_service` in its spec, so its requests are not SigV4-signed; remove it from --aws-sign\n"
    );
    assert_eq!(
        run(&["--aws-sign", "bedrock", "--upstream", "bedrock=http://127.0.0.1:9"], &keys),
        "error: no AWS region for `bedrock`: set AWS_REGION, or use an upstream host like bedrock-runtime.us-east-1.amazonaws.com (got `127.0.0.1`)\n"
    );
    assert_eq!(
        run(&["--aws-sign", "nope"], &keys),
        "error: --aws-sign names `nope`, which is not a loaded provider (see `specter list`)\n"
    );
}
