//! ServiceAccount tokens from the TokenRequest API, as the kubelet gets them for pods.

use std::fmt;

use anyhow::Context;
use k8s_openapi::api::{
    authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
};
use kube::{Api, Client, api::PostParams};

/// A ServiceAccount, `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for ServiceAccountRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => Ok(Self {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(format!("not NAMESPACE/NAME: {text:?}")),
        }
    }
}

impl fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A token of `account` valid for `seconds`, bound to Node `node` when given: it carries the node's name (which the
/// agent's admission policy checks) and dies with the Node.
pub async fn token(
    client: &Client,
    account: &ServiceAccountRef,
    node: Option<&str>,
    seconds: i64,
) -> anyhow::Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &account.namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(seconds),
            bound_object_ref: node.map(|node| BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Node".to_owned()),
                name: Some(node.to_owned()),
                uid: None,
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let response: TokenRequest = accounts
        .create_subresource("token", &account.name, &PostParams::default(), &request)
        .await
        .with_context(|| match node {
            Some(node) => format!("minting a token of {account} bound to Node {node}"),
            None => format!("minting a token of {account}"),
        })?;
    response
        .status
        .and_then(|status| status.token)
        .with_context(|| format!("the TokenRequest for {account} came back without a token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_account_is_namespace_slash_name() {
        let account: ServiceAccountRef = "rktnetes-agent/rktnetes-agent".parse().unwrap();
        assert_eq!(account.to_string(), "rktnetes-agent/rktnetes-agent");
        assert!("rktnetes-agent".parse::<ServiceAccountRef>().is_err());
        assert!("/x".parse::<ServiceAccountRef>().is_err());
    }
}
