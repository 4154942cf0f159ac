"""Collecting experience: whole episodes in groups (GRPO) and fixed-length rollouts (PPO).

Shape letters: E episodes (= B groups x G samples, group-major), T time steps (padded to the
longest episode), D observation size, N parallel environments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from grpo.control.envs import EnvInfo, make_env
from grpo.control.policies import Actor, Critic


@dataclass
class EpisodeBatch:
    """Whole episodes, right-padded to the longest one. Episode e belongs to group e // G."""

    obs: Tensor  # [E, T, D]
    actions: Tensor  # [E, T] (discrete) or [E, T, A]
    logp: Tensor  # [E, T] log-probs under the policy that collected them
    rewards: Tensor  # [E, T]
    mask: Tensor  # [E, T] true on real steps
    returns: Tensor  # [E] undiscounted episode returns
    env_steps: int
    baseline: Tensor | None = None  # [B] return of the greedy episode from each group's seed (ReMax)

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(-1)


class GroupCollector:
    """Plays G episodes per group, all reset with the group's seed, differing only by sampling.

    The environments are plain ``gym.Env`` objects stepped in lockstep with one batched policy
    call per step; an episode that has ended is not stepped again (a vector env would keep
    stepping or auto-reset it, which is not what a group needs).
    """

    def __init__(self, info: EnvInfo, n_groups: int, group_size: int):
        if info.max_episode_steps is None:
            raise ValueError(f"env: {info.env_id} has no time limit; set max_episode_steps so "
                             "that every episode of a group ends")
        self.info, self.group_size = info, group_size
        self.n_episodes = n_groups * group_size
        self.envs = [make_env(info.env_id, info.max_episode_steps) for _ in range(self.n_episodes)]
        E, T, D = self.n_episodes, info.max_episode_steps, info.obs_dim
        act_shape = (E, T) if info.discrete else (E, T, info.action_dim)
        self._obs = np.zeros((E, T, D), dtype=np.float32)
        self._actions = np.zeros(act_shape, dtype=np.int64 if info.discrete else np.float32)
        self._logp = np.zeros((E, T), dtype=np.float32)
        self._rewards = np.zeros((E, T), dtype=np.float32)

    def collect(self, actor: Actor, seeds: list[int]) -> EpisodeBatch:
        """One episode per environment; ``seeds`` holds one reset seed per group."""
        G = self.group_size
        if len(seeds) * G != self.n_episodes:
            raise ValueError(f"need {self.n_episodes // G} group seeds, got {len(seeds)}")
        E = self.n_episodes
        obs = np.stack([env.reset(seed=int(seeds[e // G]))[0] for e, env in enumerate(self.envs)])
        obs = obs.astype(np.float32)  # [E, D]
        lengths = np.zeros(E, dtype=np.int64)
        active = np.arange(E)
        t = 0
        while active.size:
            self._obs[active, t] = obs[active]
            actions, logp = actor.sample(torch.from_numpy(obs[active]))
            env_actions = actor.to_env(actions)
            self._actions[active, t] = actions.numpy()
            self._logp[active, t] = logp.numpy()
            still = []
            for k, e in enumerate(active):
                o, r, term, trunc, _ = self.envs[e].step(env_actions[k])
                self._rewards[e, t] = r
                obs[e] = o
                if term or trunc:
                    lengths[e] = t + 1
                else:
                    still.append(e)
            active = np.asarray(still, dtype=np.int64)
            t += 1
        T = int(lengths.max())
        mask = torch.arange(T)[None, :] < torch.from_numpy(lengths)[:, None]  # [E, T]
        rewards = torch.from_numpy(self._rewards[:, :T].copy()) * mask
        return EpisodeBatch(
            obs=torch.from_numpy(self._obs[:, :T].copy()),
            actions=torch.from_numpy(self._actions[:, :T].copy()),
            logp=torch.from_numpy(self._logp[:, :T].copy()),
            rewards=rewards,
            mask=mask,
            returns=rewards.sum(-1),
            env_steps=int(lengths.sum()),
        )

    def greedy_returns(self, actor: Actor, seeds: list[int]) -> tuple[Tensor, int]:
        """ReMax's baseline: one greedy-action episode per group, reset with the group's seed, on the
        first B environments. Returns (returns [B], env steps taken)."""
        envs = self.envs[:len(seeds)]
        obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]).astype(np.float32)  # [B, D]
        returns, steps = np.zeros(len(seeds)), 0
        active = np.arange(len(seeds))
        while active.size:
            actions = actor.to_env(actor.greedy(torch.from_numpy(obs[active])))
            still = []
            for k, b in enumerate(active):
                o, r, term, trunc, _ = envs[b].step(actions[k])
                returns[b] += float(r)
                obs[b] = o
                steps += 1
                if not (term or trunc):
                    still.append(b)
            active = np.asarray(still, dtype=np.int64)
        return torch.from_numpy(returns).float(), steps

    def close(self) -> None:
        for env in self.envs:
            env.close()


@dataclass
class StepBatch:
    """A fixed-length rollout of N environments for T steps (time is the last dimension)."""

    obs: Tensor  # [N, T, D]
    actions: Tensor  # [N, T] or [N, T, A]
    logp: Tensor  # [N, T]
    values: Tensor  # [N, T]  V(s_t)
    next_values: Tensor  # [N, T] V(s_{t+1}); at a truncated step, V of the final observation
    rewards: Tensor  # [N, T]
    terminated: Tensor  # [N, T]
    episode_end: Tensor  # [N, T] terminated or truncated
    episode_returns: list[float]  # returns of the episodes that ended during the rollout
    env_steps: int


class StepCollector:
    """PPO's rollouts: N environments stepped in lockstep, each reset as soon as its episode ends
    (same-step auto-reset), keeping the final observation of a truncated episode to bootstrap
    its value. A plain loop rather than gymnasium's SyncVectorEnv, whose per-step bookkeeping
    cost about as much as CartPole itself.

    Episodes run across rollouts, so a checkpoint must hold the environments mid-episode. Without
    pickling them, :meth:`state` records how each env's current episode began (its reset seed, or
    the state of the env's ``np_random`` just before an auto-reset) and the actions taken since;
    :meth:`load_state` resets and replays them. A gymnasium env draws all its randomness from
    ``np_random``, so the replay reaches the same internal state, checked on the observation.
    """

    def __init__(self, info: EnvInfo, n_envs: int, seed: int):
        self.info, self.n_envs = info, n_envs
        self.envs = [make_env(info.env_id, info.max_episode_steps) for _ in range(n_envs)]
        self.obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(self.envs)]).astype(np.float32)  # [N, D]
        self.running_return = np.zeros(n_envs)
        self._starts: list[dict] = [{"seed": seed + i} for i in range(n_envs)]  # how each episode began
        self._actions: list[list] = [[] for _ in range(n_envs)]  # env actions since then

    def state(self) -> dict:
        """JSON-able state of the environments: per env, its episode's start and actions so far."""
        return {"starts": self._starts, "actions": [[np.asarray(a).tolist() for a in acts] for acts in self._actions],
                "obs": self.obs.tolist()}

    def load_state(self, state: dict) -> None:
        """Bring every env to where :meth:`state` found it, by reset and replay."""
        dtype = None if self.info.discrete else np.float32
        for i, env in enumerate(self.envs):
            start, actions = state["starts"][i], state["actions"][i]
            if "seed" in start:
                obs, _ = env.reset(seed=start["seed"])
            else:
                rng = np.random.Generator(getattr(np.random, start["rng"]["bit_generator"])())
                rng.bit_generator.state = start["rng"]
                env.unwrapped.np_random = rng
                obs, _ = env.reset()
            self.running_return[i] = 0.0
            for a in actions:
                obs, r, *_ = env.step(np.asarray(a, dtype=dtype) if dtype else a)
                self.running_return[i] += r
            self.obs[i] = obs
            self._starts[i], self._actions[i] = start, list(actions)
        if not np.array_equal(self.obs, np.asarray(state["obs"], dtype=np.float32)):
            raise ValueError(f"env: {self.info.env_id} did not replay to the saved observations (does it draw "
                             "randomness outside its np_random?); the run cannot be resumed exactly")

    def collect(self, actor: Actor, critic: Critic, n_steps: int) -> StepBatch:
        N, T, D = self.n_envs, n_steps, self.info.obs_dim
        obs_buf = np.zeros((N, T, D), dtype=np.float32)
        act_buf: list[Tensor] = []
        logp_buf = torch.zeros(N, T)
        values = torch.zeros(N, T + 1)
        final_values = torch.zeros(N, T)
        rewards = np.zeros((N, T), dtype=np.float32)
        terminated = np.zeros((N, T), dtype=bool)
        ended = np.zeros((N, T), dtype=bool)
        finished: list[float] = []
        with torch.no_grad():
            for t in range(T):
                obs_t = torch.from_numpy(self.obs)
                obs_buf[:, t] = self.obs
                actions, logp = actor.sample(obs_t)
                values[:, t] = critic(obs_t)
                act_buf.append(actions)
                logp_buf[:, t] = logp
                env_actions = actor.to_env(actions)
                truncated_final: list[tuple[int, np.ndarray]] = []
                for i, env in enumerate(self.envs):
                    o, r, term, trunc, _ = env.step(env_actions[i])
                    rewards[i, t], terminated[i, t] = r, term
                    self.running_return[i] += r
                    self._actions[i].append(env_actions[i])
                    if term or trunc:
                        ended[i, t] = True
                        finished.append(float(self.running_return[i]))
                        self.running_return[i] = 0.0
                        if not term:
                            truncated_final.append((i, o))
                        self._starts[i] = {"rng": env.unwrapped.np_random.bit_generator.state}
                        self._actions[i] = []
                        o, _ = env.reset()
                    self.obs[i] = o
                if truncated_final:
                    idx = [i for i, _ in truncated_final]
                    final = np.stack([o for _, o in truncated_final]).astype(np.float32)
                    final_values[idx, t] = critic(torch.from_numpy(final))
            values[:, T] = critic(torch.from_numpy(self.obs))
        next_values = values[:, 1:].clone()
        ended_t = torch.from_numpy(ended)
        next_values[ended_t] = final_values[ended_t]  # terminated ones are ignored by GAE
        return StepBatch(
            obs=torch.from_numpy(obs_buf),
            actions=torch.stack(act_buf, dim=1),
            logp=logp_buf,
            values=values[:, :T],
            next_values=next_values,
            rewards=torch.from_numpy(rewards),
            terminated=torch.from_numpy(terminated),
            episode_end=ended_t,
            episode_returns=finished,
            env_steps=N * T,
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()
