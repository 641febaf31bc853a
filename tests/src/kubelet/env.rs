//! The container environment: `envFrom`, then `env` (later entries win), with `valueFrom`
//! Secrets, ConfigMaps and downward-API fields resolved as a kubelet resolves them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use kube::{Api, Client};

use super::StartError;
use super::expand::expand;

/// Reads Secrets and ConfigMaps of the pod's namespace.
pub(crate) struct RefSource {
    secrets: Api<Secret>,
    config_maps: Api<ConfigMap>,
}

impl RefSource {
    pub(crate) fn new(client: &Client, namespace: &str) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), namespace),
            config_maps: Api::namespaced(client.clone(), namespace),
        }
    }

    /// All keys of a Secret, decoded as UTF-8; `None` when it does not exist.
    pub(crate) async fn secret(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, StartError> {
        let secret = self
            .secrets
            .get_opt(name)
            .await
            .map_err(|e| StartError::api("Secret", name, e))?;
        Ok(secret.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect()
        }))
    }

    /// All keys of a ConfigMap (`data` and `binaryData`); `None` when it does not exist.
    pub(crate) async fn config_map(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, StartError> {
        let cm = self
            .config_maps
            .get_opt(name)
            .await
            .map_err(|e| StartError::api("ConfigMap", name, e))?;
        Ok(cm.map(|cm| {
            let mut all = cm.data.unwrap_or_default();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                all.insert(k, String::from_utf8_lossy(&v.0).into_owned());
            }
            all
        }))
    }
}

fn missing(kind: &str, name: &str, key: Option<&str>) -> StartError {
    let message = match key {
        Some(key) => format!("couldn't find key {key} in {kind} {name}"),
        None => format!("{kind} {name} not found"),
    };
    StartError::new("CreateContainerConfigError", message)
}

/// Resolves the container's environment in declaration order.
pub(crate) async fn resolve(
    pod: &Pod,
    container: &Container,
    refs: &RefSource,
) -> Result<Vec<(String, String)>, StartError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or("");
        let (kind, name, optional, data) = if let Some(r) = &source.secret_ref {
            (
                "Secret",
                r.name.as_str(),
                r.optional,
                refs.secret(&r.name).await?,
            )
        } else if let Some(r) = &source.config_map_ref {
            (
                "ConfigMap",
                r.name.as_str(),
                r.optional,
                refs.config_map(&r.name).await?,
            )
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    set(&mut env, format!("{prefix}{k}"), v);
                }
            }
            None if optional == Some(true) => {}
            None => return Err(missing(kind, name, None)),
        }
    }

    for var in container.env.iter().flatten() {
        if let Some(value) = value_of(pod, var, refs).await? {
            let value = match var.value_from {
                // Only literal values are expanded, against the variables defined before them.
                None => expand(&value, |n| {
                    env.iter()
                        .rev()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.as_str())
                }),
                Some(_) => value,
            };
            set(&mut env, var.name.clone(), value);
        }
    }
    Ok(env)
}

async fn value_of(pod: &Pod, var: &EnvVar, refs: &RefSource) -> Result<Option<String>, StartError> {
    let Some(from) = &var.value_from else {
        return Ok(Some(var.value.clone().unwrap_or_default()));
    };
    if let Some(r) = &from.secret_key_ref {
        return keyed(
            refs.secret(&r.name).await?,
            "Secret",
            &r.name,
            &r.key,
            r.optional,
        );
    }
    if let Some(r) = &from.config_map_key_ref {
        return keyed(
            refs.config_map(&r.name).await?,
            "ConfigMap",
            &r.name,
            &r.key,
            r.optional,
        );
    }
    if let Some(r) = &from.field_ref {
        return field(pod, &r.field_path).map(Some);
    }
    Err(StartError::new(
        "CreateContainerConfigError",
        format!(
            "env {}: only secretKeyRef, configMapKeyRef and fieldRef are supported by the kubelet stand-in",
            var.name
        ),
    ))
}

fn keyed(
    data: Option<BTreeMap<String, String>>,
    kind: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, StartError> {
    match data.as_ref().map(|d| d.get(key)) {
        Some(Some(v)) => Ok(Some(v.clone())),
        _ if optional == Some(true) => Ok(None),
        Some(None) => Err(missing(kind, name, Some(key))),
        None => Err(missing(kind, name, None)),
    }
}

/// The downward-API fields a kubelet serves through `fieldRef`.
fn field(pod: &Pod, path: &str) -> Result<String, StartError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix("['"))
            .and_then(|rest| rest.strip_suffix("']"))
    };
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        // Every pod runs on this host.
        "status.podIP" | "status.podIPs" | "status.hostIP" | "status.hostIPs" => {
            Some("127.0.0.1".to_owned())
        }
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                meta.labels.as_ref().and_then(|l| l.get(key).cloned())
            } else if let Some(key) = subscript("metadata.annotations") {
                meta.annotations.as_ref().and_then(|a| a.get(key).cloned())
            } else {
                return Err(StartError::new(
                    "CreateContainerConfigError",
                    format!("fieldRef {path} is not supported by the kubelet stand-in"),
                ));
            }
        }
    };
    Ok(value.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_ref_reads_the_completion_index_annotation() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns",
                         "annotations": {"batch.kubernetes.io/job-completion-index": "2"},
                         "labels": {"app": "scan"}},
        }))
        .unwrap();
        let idx = field(
            &pod,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']",
        );
        assert_eq!(idx.unwrap(), "2");
        assert_eq!(field(&pod, "metadata.labels['app']").unwrap(), "scan");
        assert_eq!(field(&pod, "metadata.name").unwrap(), "p");
        assert_eq!(field(&pod, "metadata.labels['none']").unwrap(), "");
        assert!(field(&pod, "spec.unknown").is_err());
    }
}
