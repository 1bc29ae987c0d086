//! Raft RPCs over HTTP/JSON: `POST {peer}/api/v1/raft/{request-vote,append-entries,install-snapshot}`.
//!
//! The body is the openraft request as JSON; the answer is `{"Ok": response}` or
//! `{"Err": RaftError}` (serde's encoding of `Result`). A refused connection is reported as
//! `Unreachable`, so openraft backs off before retrying that peer; any other transport failure is
//! a `NetworkError`, retried on the next heartbeat.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::TypeConfig;

/// Creates one [`HttpNetwork`] per peer; all share one pooled HTTP client.
#[derive(Clone)]
pub struct HttpNetworkFactory {
    client: reqwest::Client,
    /// Pause before retrying a peer whose connection was refused.
    backoff: Duration,
}

impl HttpNetworkFactory {
    /// A factory whose peers are retried after `backoff` when unreachable.
    pub fn new(client: reqwest::Client, backoff: Duration) -> Self {
        Self { client, backoff }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetworkFactory {
    type Network = HttpNetwork;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        HttpNetwork {
            target,
            base_url: node.addr.trim_end_matches('/').to_string(),
            client: self.client.clone(),
            backoff: self.backoff,
        }
    }
}

/// The connection to one peer.
pub struct HttpNetwork {
    target: u64,
    base_url: String,
    client: reqwest::Client,
    backoff: Duration,
}

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, E>>;

impl HttpNetwork {
    async fn post<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}/api/v1/raft/{path}", self.base_url);
        let resp = self
            .client
            .post(&url)
            .timeout(option.hard_ttl())
            .json(req)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let result: Result<Resp, E> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for HttpNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, RaftError<u64>> {
        self.post("append-entries", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
        self.post("install-snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, RaftError<u64>> {
        self.post("request-vote", &rpc, &option).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}
