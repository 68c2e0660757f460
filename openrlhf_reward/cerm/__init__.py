"""CE-RM training: the two-stage rollout for OpenRLHF's agent hook (see docs/cerm.md).

* :mod:`openrlhf_reward.cerm.rollout`: the rollout's configuration, labels, chat-turn
  stitching and rewards, free of OpenRLHF (unit-testable anywhere);
* ``openrlhf_reward/cerm/agent.py``: the file given to ``--train.agent_func_path``; it
  defines OpenRLHF's ``AgentExecutor`` and imports OpenRLHF, so nothing here imports it.

Inference (serving a CE-RM as a reward) is the ``judge`` backend's ``mode=cerm``; both use
the prompts and parsers of :mod:`openrlhf_reward.judge_prompts`.
"""
