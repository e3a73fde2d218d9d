//! Re-signing with AWS Signature Version 4. A SigV4 signature covers the host and path, so a
//! request an SDK signed for the gateway cannot be valid at the provider. For providers whose
//! spec names an `upstream.aws_service` and that the operator lists with `--aws-sign`, the gateway
//! drops the client's signature and signs the forwarded request with its own credentials (the
//! `aws-sigv4` crate does the signing).
//!
//! Credentials come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally
//! `AWS_SESSION_TOKEN`; the region from `AWS_REGION` or `AWS_DEFAULT_REGION`, else from the
//! upstream host (`SERVICE.REGION.amazonaws.com`).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::Full;

/// Headers of the client's own signature, replaced by the gateway's.
const CLIENT_SIGNATURE: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Why re-signing cannot be set up or applied.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// No credentials in the environment.
    #[error("--aws-sign needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment (profiles, SSO and instance roles are not read)")]
    NoCredentials,
    /// The provider's spec names no AWS service.
    #[error("provider `{0}` has no `upstream.aws_service` in its spec, so its requests are not SigV4-signed; remove it from --aws-sign")]
    NotSigned(String),
    /// No region known.
    #[error("no AWS region for `{provider}`: set AWS_REGION, or use an upstream host like bedrock-runtime.us-east-1.amazonaws.com (got `{host}`)")]
    NoRegion {
        /// The provider.
        provider: String,
        /// Its upstream host.
        host: String,
    },
    /// The signer refused the request.
    #[error("cannot sign the request: {0}")]
    Sign(String),
}

/// How one provider's requests are re-signed.
#[derive(Clone)]
pub struct AwsSigning {
    credentials: Credentials,
    /// The AWS service name, e.g. `bedrock`.
    pub service: String,
    /// The AWS region, e.g. `us-east-1`.
    pub region: String,
}

impl std::fmt::Debug for AwsSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credentials stay out of any debug output.
        f.debug_struct("AwsSigning")
            .field("service", &self.service)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The region of an AWS endpoint host: `SERVICE.REGION.amazonaws.com` (also `.com.cn`).
fn region_of_host(host: &str) -> Option<String> {
    let mut labels = host.split('.');
    let _service = labels.next()?;
    let region = labels.next()?;
    let rest: Vec<&str> = labels.collect();
    let aws = matches!(
        rest.as_slice(),
        ["amazonaws", "com"] | ["amazonaws", "com", "cn"]
    );
    (aws && !region.is_empty()).then(|| region.to_string())
}

impl AwsSigning {
    /// Re-signing for `provider`, whose spec names `service` and whose upstream is `base_url`,
    /// with credentials and region from the environment.
    ///
    /// # Errors
    /// When the provider is not signed, or credentials or region are missing.
    pub fn from_env(
        provider: &str,
        service: Option<&str>,
        base_url: &str,
    ) -> Result<AwsSigning, SignError> {
        let service = service.ok_or_else(|| SignError::NotSigned(provider.to_string()))?;
        let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(SignError::NoCredentials);
        };
        let host = base_url
            .split_once("://")
            .map_or(base_url, |(_, rest)| rest)
            .split(['/', ':'])
            .next()
            .unwrap_or_default();
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| region_of_host(host))
            .ok_or_else(|| SignError::NoRegion {
                provider: provider.to_string(),
                host: host.to_string(),
            })?;
        Ok(AwsSigning {
            credentials: Credentials::new(key, secret, env("AWS_SESSION_TOKEN"), None, "env"),
            service: service.to_string(),
            region,
        })
    }

    /// Replaces the client's signature on `request` (whose URI is the upstream's absolute URL)
    /// with one made with the gateway's credentials over the request as it will be sent.
    ///
    /// # Errors
    /// When the signer refuses the request (an unparsable URI).
    pub fn sign(
        &self,
        request: &mut hyper::Request<Full<Bytes>>,
        body: &[u8],
    ) -> Result<(), SignError> {
        for name in CLIENT_SIGNATURE {
            request.headers_mut().remove(name);
        }
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SignError::Sign(e.to_string()))?
            .into();
        let uri = request.uri().to_string();
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
            .collect();
        let signable = SignableRequest::new(
            request.method().as_str(),
            &uri,
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| SignError::Sign(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| SignError::Sign(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::region_of_host;

    #[test]
    fn regions_come_from_aws_endpoint_hosts_only() {
        assert_eq!(
            region_of_host("bedrock-runtime.us-west-2.amazonaws.com").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            region_of_host("bedrock-runtime.cn-north-1.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(region_of_host("127.0.0.1"), None);
        assert_eq!(region_of_host("bedrock.example.com"), None);
    }
}
