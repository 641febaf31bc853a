//! Pod volumes as local directories: hostPath as is, a test mapping by volume name, emptyDir and
//! projected volumes as fresh directories, Secret and ConfigMap volumes written out as files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};

use super::StartError;
use super::env::RefSource;

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StartError {
    StartError::new(
        "CreateContainerError",
        format!("{what} {}: {e}", path.display()),
    )
}

/// Resolves every volume of the pod to a local directory, creating what needs creating.
pub(crate) async fn resolve(
    pod: &Pod,
    mapped: &HashMap<String, PathBuf>,
    pod_dir: &Path,
    refs: &RefSource,
) -> Result<HashMap<String, PathBuf>, StartError> {
    let mut dirs = HashMap::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for volume in volumes.into_iter().flatten() {
        let dir = resolve_one(volume, mapped, pod_dir, refs).await?;
        dirs.insert(volume.name.clone(), dir);
    }
    Ok(dirs)
}

async fn resolve_one(
    volume: &Volume,
    mapped: &HashMap<String, PathBuf>,
    pod_dir: &Path,
    refs: &RefSource,
) -> Result<PathBuf, StartError> {
    if let Some(dir) = mapped.get(&volume.name) {
        return Ok(dir.clone());
    }
    let own = pod_dir.join("volumes").join(&volume.name);
    let create =
        |dir: &Path| std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e));
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        if matches!(host.type_.as_deref(), Some("DirectoryOrCreate")) {
            create(&path)?;
        }
        return Ok(path);
    }
    if volume.empty_dir.is_some() || volume.projected.is_some() {
        // Projected volumes are mostly the injected service-account token, which pods run here
        // never use: an empty directory keeps such pods runnable.
        create(&own)?;
        return Ok(own);
    }
    if let Some(s) = &volume.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        create(&own)?;
        write_keys(
            refs.secret(&name).await?,
            "Secret",
            &name,
            s.items.as_deref(),
            s.optional,
            &own,
        )?;
        return Ok(own);
    }
    if let Some(c) = &volume.config_map {
        create(&own)?;
        write_keys(
            refs.config_map(&c.name).await?,
            "ConfigMap",
            &c.name,
            c.items.as_deref(),
            c.optional,
            &own,
        )?;
        return Ok(own);
    }
    Err(StartError::new(
        "UnsupportedVolume",
        format!(
            "volume {} has a source the kubelet stand-in cannot provide; map it to a local directory by name",
            volume.name
        ),
    ))
}

fn write_keys(
    data: Option<BTreeMap<String, String>>,
    kind: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    dir: &Path,
) -> Result<(), StartError> {
    let Some(data) = data else {
        if optional == Some(true) {
            return Ok(());
        }
        return Err(StartError::new(
            "CreateContainerConfigError",
            format!("{kind} {name} not found"),
        ));
    };
    let files: Vec<(String, &String)> = match items {
        Some(items) => items
            .iter()
            .filter_map(|item| data.get(&item.key).map(|v| (item.path.clone(), v)))
            .collect(),
        None => data.iter().map(|(k, v)| (k.clone(), v)).collect(),
    };
    for (rel, value) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error("creating", parent, e))?;
        }
        std::fs::write(&path, value).map_err(|e| io_error("writing", &path, e))?;
    }
    Ok(())
}
