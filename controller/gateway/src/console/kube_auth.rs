//! The console in Kubernetes: a person signs in with their own bearer token (a ServiceAccount token, or the
//! OIDC token their kubectl uses). The API server says who it is (`TokenReview`) and what they may do
//! (`SubjectAccessReview`: `get sessions` to see a namespace's sessions, `create approvals` to decide its
//! asks), so the console shows and allows exactly what their RBAC allows. A decision is an Approval object
//! created with the person's own token: the API server authenticates it as them, and the chart's admission
//! policy holds (the decider named must be the creator). The gateway's own identity only reviews.
//!
//! Answers are kept for [`REVIEW_TTL`]: a revoked token or a removed RoleBinding takes effect within that.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, ListParams, PostParams};
use kube::{Resource, ResourceExt};
use paddock_api::agent::LocalObjectReference;
use paddock_api::approval::{ApprovalSpec, DECIDED_BY_ANNOTATION, Decision};
use paddock_api::{Approval, Session};

/// How long a review's answer is used before the API server is asked again.
pub const REVIEW_TTL: Duration = Duration::from_secs(30);
/// Answers kept at most (each map); past it the stale ones go, then the oldest quarter.
const MAX_KEPT: usize = 4096;

/// A person as the API server knows them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KubeUser {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// A person's answer to one ask of a session (the gateway's session id is its Session's uid).
#[derive(Clone, Copy, Debug)]
pub struct AskAnswer<'a> {
    pub namespace: &'a str,
    pub session_uid: &'a str,
    pub request_id: &'a str,
    pub approve: bool,
    pub reason: &'a str,
}

/// Makes a client that acts with a person's bearer token (and nothing of the gateway's own credentials).
pub type UserClient = Box<dyn Fn(&str) -> Result<kube::Client, String> + Send + Sync>;

type Kept<K, V> = Mutex<HashMap<K, (Instant, V)>>;

pub struct KubeAuth {
    /// The gateway's own identity: it creates TokenReviews and SubjectAccessReviews, nothing else.
    client: kube::Client,
    as_user: UserClient,
    /// How long an answer is used ([`REVIEW_TTL`]; shorter in tests).
    ttl: Duration,
    reviews: Kept<String, Option<KubeUser>>,
    /// Keyed by the whole person (name, uid, groups, extra: two tokens of one name may carry different
    /// groups), the verb, the resource and the namespace.
    access: Kept<(String, &'static str, &'static str, String), bool>,
}

fn kept<K: std::hash::Hash + Eq + Clone, V: Clone>(map: &Kept<K, V>, key: &K, ttl: Duration) -> Option<V> {
    let map = map.lock().expect("kept");
    map.get(key).filter(|(at, _)| at.elapsed() < ttl).map(|(_, v)| v.clone())
}

fn keep<K: std::hash::Hash + Eq + Clone, V>(map: &Kept<K, V>, key: K, value: V) {
    let mut map = map.lock().expect("kept");
    if map.len() >= MAX_KEPT {
        map.retain(|_, (at, _)| at.elapsed() < REVIEW_TTL);
        if map.len() >= MAX_KEPT {
            // Still full of fresh answers (a flood of new tokens): the oldest quarter goes, not everyone's.
            let mut ages: Vec<Instant> = map.values().map(|(at, _)| *at).collect();
            ages.sort_unstable();
            let cut = ages[MAX_KEPT / 4];
            map.retain(|_, (at, _)| *at > cut);
        }
    }
    map.insert(key, (Instant::now(), value));
}

impl KubeAuth {
    /// From the environment: the pod's ServiceAccount in a cluster, else `KUBECONFIG`. Clients acting for a
    /// person reach the same API server with the same CA, and only the person's token.
    pub async fn from_environment() -> anyhow::Result<KubeAuth> {
        let config = kube::Config::infer().await.map_err(|e| anyhow::anyhow!("console.kubernetes: {e}"))?;
        let client = kube::Client::try_from(config.clone())?;
        let as_user: UserClient = Box::new(move |token: &str| {
            let mut c = config.clone();
            // Only the token: never the gateway's client certificate, exec plugin or its own token.
            c.auth_info = kube::config::AuthInfo { token: Some(token.to_owned().into()), ..Default::default() };
            kube::Client::try_from(c).map_err(|e| e.to_string())
        });
        Ok(KubeAuth::new(client, as_user))
    }

    pub fn new(client: kube::Client, as_user: UserClient) -> KubeAuth {
        KubeAuth {
            client,
            as_user,
            ttl: REVIEW_TTL,
            reviews: Mutex::new(HashMap::new()),
            access: Mutex::new(HashMap::new()),
        }
    }

    /// Answers are used for `ttl` instead of [`REVIEW_TTL`].
    pub fn with_ttl(mut self, ttl: Duration) -> KubeAuth {
        self.ttl = ttl;
        self
    }

    /// How long an answer is used: a lost right takes effect within it.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Who `token` belongs to: `Ok(None)` when the API server does not authenticate it.
    pub async fn review(&self, token: &str) -> Result<Option<KubeUser>, String> {
        let key = crate::gateway::hash_token(token);
        if let Some(v) = kept(&self.reviews, &key, self.ttl) {
            return Ok(v);
        }
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_owned()), ..Default::default() },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await.map_err(|e| format!("TokenReview: {e}"))?;
        let status = answer.status.unwrap_or_default();
        let user = match (status.authenticated, status.user) {
            (Some(true), Some(u)) if u.username.as_deref().is_some_and(|n| !n.is_empty()) => Some(KubeUser {
                username: u.username.unwrap_or_default(),
                uid: u.uid,
                groups: u.groups.unwrap_or_default(),
                extra: u.extra.unwrap_or_default(),
            }),
            _ => None,
        };
        keep(&self.reviews, key, user.clone());
        Ok(user)
    }

    /// Whether `user` may `verb` `resource` (of group `paddock.dev`) in `namespace`. An error is a no.
    pub async fn allows(&self, user: &KubeUser, verb: &'static str, resource: &'static str, namespace: &str) -> bool {
        let who = crate::gateway::hash_token(&serde_json::to_string(user).expect("json"));
        let key = (who, verb, resource, namespace.to_owned());
        if let Some(v) = kept(&self.access, &key, self.ttl) {
            return v;
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.username.clone()),
                uid: user.uid.clone(),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("paddock.dev".into()),
                    resource: Some(resource.into()),
                    verb: Some(verb.into()),
                    namespace: Some(namespace.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let allowed = match api.create(&PostParams::default(), &review).await {
            Ok(a) => a.status.is_some_and(|s| s.allowed && s.denied != Some(true)),
            Err(e) => {
                tracing::warn!(error = %e, user = %user.username, verb, resource, namespace, "SubjectAccessReview failed; refused");
                return false;
            }
        };
        keep(&self.access, key, allowed);
        allowed
    }

    /// Decides an ask by creating an Approval in `namespace` as the person whose `token` this is: the
    /// controller relays it to the gateway. Returns the Approval's name.
    /// `Err`: an HTTP status for the page (the API server's own when it refused) and what happened.
    pub async fn create_approval(
        &self,
        token: &str,
        user: &KubeUser,
        ask: &AskAnswer<'_>,
    ) -> Result<String, (u16, String)> {
        let AskAnswer { namespace, session_uid, request_id, approve, reason } = *ask;
        let client = (self.as_user)(token).map_err(|e| (502, e))?;
        // The gateway knows a session by its Session's uid; an Approval names the Session.
        let sessions: Api<Session> = Api::namespaced(client.clone(), namespace);
        let list = sessions.list(&ListParams::default()).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 403 => {
                (403, format!("you may not list Sessions in namespace `{namespace}`"))
            }
            e => (502, format!("cannot list Sessions in namespace `{namespace}`: {e}")),
        })?;
        let session = list
            .items
            .iter()
            .find(|s| s.meta().uid.as_deref() == Some(session_uid))
            .map(|s| s.name_any())
            .ok_or_else(|| (404, format!("no Session in namespace `{namespace}` has uid `{session_uid}`")))?;
        let mut approval = Approval::new(
            "",
            ApprovalSpec {
                session_ref: LocalObjectReference { name: session },
                request_id: request_id.to_owned(),
                decision: if approve { Decision::Approve } else { Decision::Deny },
                reason: (!reason.is_empty()).then(|| reason.to_owned()),
            },
        );
        approval.metadata.name = None;
        approval.metadata.generate_name = Some("console-".into());
        approval.metadata.annotations = Some([(DECIDED_BY_ANNOTATION.to_owned(), user.username.clone())].into());
        let api: Api<Approval> = Api::namespaced(client, namespace);
        let created = api.create(&PostParams::default(), &approval).await.map_err(|e| match e {
            kube::Error::Api(s) => (s.code, format!("the API server refused the Approval: {}", s.message)),
            e => (502, format!("cannot create the Approval: {e}")),
        })?;
        Ok(created.name_any())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_answers_evicts_the_oldest_not_everyone() {
        let kept: Kept<String, bool> = Mutex::new(HashMap::new());
        keep(&kept, "early".into(), true);
        std::thread::sleep(Duration::from_millis(2));
        for i in 0..MAX_KEPT * 2 {
            keep(&kept, format!("flood-{i}"), false);
        }
        let map = kept.lock().unwrap();
        assert!(map.len() <= MAX_KEPT);
        assert!(!map.contains_key("early"), "the oldest went first");
        assert!(map.contains_key(&format!("flood-{}", MAX_KEPT * 2 - 1)), "the newest stays");
        assert!(map.len() > MAX_KEPT / 2, "not cleared: {}", map.len());
    }
}
