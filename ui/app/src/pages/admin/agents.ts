// Dashboard agent profiles: list, create, edit and delete; write-only provider API keys; feedback export.
import { API, del, explain, get, post, put } from '../../api';
import { h } from '../../dom';
import type { Section } from './index';
import { KeyedTable, Messages, checkField, confirmDialog, field, formDialog, loading } from './util';

interface Hitl {
  approve_risky: boolean;
  approve_safety_checks: boolean;
  feedback: boolean;
  wait_for_feedback: boolean;
  approval_timeout_secs: number;
  input_timeout_secs: number;
  checkpoint_every: number;
  max_checkpoints: number;
  corrections_in_context: number;
}

interface Profile {
  id: string;
  owner: string;
  name: string;
  system_prompt: string;
  provider: {
    generation: string;
    model: string;
    base_url: string | null;
    max_tokens: number;
    thinking: string | null;
    max_retries: number;
    timeout_secs: number;
    api_key_env: string | null;
  };
  start_url: string | null;
  allowed_domains: string[];
  max_steps: number;
  context_budget_tokens: number;
  keep_images: number;
  hitl: Hitl;
  risky_patterns: string[];
  api_key_set: boolean;
  created_at: number;
  updated_at: number;
}

const GENERATIONS: [string, string][] = [
  ['computer_20250124', 'Anthropic computer use (computer_20250124)'],
  ['computer_20251124', 'Anthropic computer use (computer_20251124)'],
  ['computer_toolset_20260801', 'Anthropic computer toolset (computer_toolset_20260801)'],
  ['computer_use_preview', 'OpenAI Responses (computer_use_preview)'],
  ['computer', 'OpenAI Responses (computer)'],
  ['functions', 'OpenAI-compatible chat completions: vLLM, Ollama, llama.cpp (functions)'],
];

const HITL_DEFAULT: Hitl = {
  approve_risky: false,
  approve_safety_checks: true,
  feedback: true,
  wait_for_feedback: false,
  approval_timeout_secs: 300,
  input_timeout_secs: 600,
  checkpoint_every: 5,
  max_checkpoints: 20,
  corrections_in_context: 10,
};

const lines = (s: string) =>
  s
    .split('\n')
    .map((x) => x.trim())
    .filter(Boolean);
const optText = (s: string) => (s.trim() ? s.trim() : null);
function optNum(s: string): number | null {
  if (!s.trim()) return null;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`"${s}" is not a whole number.`);
  return n;
}

export const render: Section = (root) => {
  const msgs = new Messages();
  const users = new Map<string, string>();
  let profiles: Profile[] = [];
  let gone = false;
  const editorBox = h('div');

  async function load(): Promise<void> {
    try {
      const [ps, us] = await Promise.allSettled([get<Profile[]>('/agents'), users.size ? Promise.resolve([]) : get<{ id: string; username: string }[]>('/users')]);
      if (us.status === 'fulfilled') for (const u of us.value) users.set(u.id, u.username);
      if (ps.status === 'rejected') throw ps.reason;
      profiles = ps.value.sort((a, b) => a.name.localeCompare(b.name));
      table.update(profiles);
      listState.replaceChildren();
    } catch (e) {
      listState.replaceChildren();
      msgs.error('The agent profiles could not be listed', e);
    }
  }

  function hitlSummary(x: Hitl): string {
    const on: string[] = [];
    if (x.feedback) on.push(x.wait_for_feedback ? 'feedback (waits)' : 'feedback');
    if (x.approve_risky) on.push('approve risky');
    if (x.approve_safety_checks) on.push('approve safety checks');
    return on.length ? on.join(', ') : 'off';
  }

  function setKey(p: Profile): void {
    const key = h('input', { type: 'password', autocomplete: 'off', required: true, spellcheck: false });
    void formDialog({
      title: `Provider API key of ${p.name}`,
      fields: [field(`adm-key-${p.id}`, `API key for ${p.name}`, key, 'Stored apart from the database; never shown again.')],
      submit: 'Save key',
      onSubmit: async () => {
        await put(`/agents/${encodeURIComponent(p.id)}/api-key`, { api_key: key.value });
      },
    }).then(async (ok) => {
      key.value = '';
      if (ok) {
        msgs.info(`The API key of ${p.name} is stored.`);
        await load();
      }
    });
  }

  async function clearKey(p: Profile): Promise<void> {
    if (!(await confirmDialog(`Remove the API key of ${p.name}?`, 'Its agent cannot call the provider until a key is set again (unless the profile names an environment variable).', 'Remove key'))) return;
    try {
      await del(`/agents/${encodeURIComponent(p.id)}/api-key`);
      msgs.info(`The API key of ${p.name} is removed.`);
    } catch (e) {
      msgs.error(`The API key of ${p.name} could not be removed`, e);
    }
    await load();
  }

  async function remove(p: Profile): Promise<void> {
    if (!(await confirmDialog(`Delete the profile ${p.name}?`, 'The profile and its API key are deleted. A profile a session uses cannot be deleted.', 'Delete profile'))) return;
    try {
      await del(`/agents/${encodeURIComponent(p.id)}`);
      msgs.info(`The profile ${p.name} is deleted.`);
      if (editorBox.dataset.id === p.id) editorBox.replaceChildren();
    } catch (e) {
      msgs.error(`The profile ${p.name} could not be deleted`, e);
    }
    await load();
  }

  const table = new KeyedTable<Profile>(
    'Agent profiles',
    [
      { head: 'Name', rowHeader: true, cell: (p) => p.name },
      { head: 'Owner', cell: (p) => users.get(p.owner) ?? p.owner.slice(0, 8) },
      {
        head: 'Provider and model',
        cell: (p) => [p.provider.model, h('div', { class: 'adm-small' }, h('code', null, p.provider.generation), ' · ', p.provider.base_url ?? 'public API')],
      },
      { head: 'Allowed domains', cell: (p) => (p.allowed_domains.length ? p.allowed_domains.join(', ') : 'any') },
      { head: 'Step limit', cell: (p) => String(p.max_steps) },
      { head: 'Human in the loop', cell: (p) => hitlSummary(p.hitl) },
      { head: 'API key', cell: (p) => (p.api_key_set ? 'set' : p.provider.api_key_env ? `from $${p.provider.api_key_env}` : 'not set') },
      {
        head: 'Actions',
        cell: (p) =>
          h(
            'div',
            { class: 'row adm-actions' },
            h('button', { type: 'button', class: 'secondary', 'aria-label': `Edit ${p.name}`, onclick: () => edit(p) }, 'Edit'),
            h('button', { type: 'button', class: 'secondary', 'aria-label': `Set API key of ${p.name}`, onclick: () => setKey(p) }, 'Set API key'),
            p.api_key_set
              ? h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove API key of ${p.name}`, onclick: () => void clearKey(p) }, 'Remove API key')
              : null,
            h('a', { href: `${API}/agents/${encodeURIComponent(p.id)}/feedback/export`, download: `feedback-${p.id}.jsonl`, 'aria-label': `Feedback export of ${p.name}` }, 'Feedback export'),
            h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${p.name}`, onclick: () => void remove(p) }, 'Delete'),
          ),
      },
    ],
    (p) => `${p.id}:${p.updated_at}:${p.api_key_set}`,
    'No agent profiles yet: create one below.',
  );

  // ---- the editor ----------------------------------------------------------------------------
  function edit(p: Profile | null): void {
    const v = p;
    const hitl = v?.hitl ?? HITL_DEFAULT;
    const id = (s: string) => `adm-ag-${s}`;
    const text = (value: string | null | undefined, attrs: Record<string, unknown> = {}) => h('input', { type: 'text', value: value ?? '', ...attrs });
    const number = (value: number | null | undefined) => h('input', { type: 'number', min: '0', step: '1', inputmode: 'numeric', value: value === null || value === undefined ? '' : String(value) });

    const name = text(v?.name, { required: true, maxlength: '200' });
    const prompt = h('textarea', { rows: 4 }, v?.system_prompt ?? '');
    const gen = h('select', null, GENERATIONS.map(([g, label]) => h('option', { value: g, selected: v?.provider.generation === g }, label)));
    if (!v) gen.value = 'computer_20250124';
    const model = text(v?.provider.model, { required: true });
    const baseUrl = text(v?.provider.base_url, { type: 'url', placeholder: 'the provider’s public API' });
    const maxTokens = number(v?.provider.max_tokens ?? null);
    const thinking = text(v?.provider.thinking);
    const retries = number(v?.provider.max_retries ?? null);
    const timeout = number(v?.provider.timeout_secs ?? null);
    const keyEnv = text(v?.provider.api_key_env);
    const apiKey = h('input', { type: 'password', autocomplete: 'off', spellcheck: false });
    const startUrl = text(v?.start_url, { type: 'url' });
    const domains = h('textarea', { rows: 3 }, (v?.allowed_domains ?? []).join('\n'));
    const maxSteps = number(v?.max_steps ?? null);
    const budget = number(v?.context_budget_tokens ?? null);
    const keepImages = number(v?.keep_images ?? null);
    const risky = h('textarea', { rows: 3 }, (v?.risky_patterns ?? []).join('\n'));
    const feedback = checkField(id('feedback'), 'Feedback prompts (human in the loop)', hitl.feedback);
    const waitFb = checkField(id('wait'), 'The agent waits for each feedback answer', hitl.wait_for_feedback);
    const approveRisky = checkField(id('risky-on'), 'Ask a person before risky actions', hitl.approve_risky, 'actions matching a risky pattern');
    const approveSafety = checkField(id('safety'), 'Ask a person before acknowledging provider safety checks', hitl.approve_safety_checks);
    const approvalTimeout = number(hitl.approval_timeout_secs);
    const inputTimeout = number(hitl.input_timeout_secs);
    const ckEvery = number(hitl.checkpoint_every);
    const ckMax = number(hitl.max_checkpoints);
    const corrections = number(hitl.corrections_in_context);

    const err = h('p', { class: 'form-error', role: 'alert' });
    const save = h('button', { type: 'submit' }, v ? 'Save profile' : 'Create profile');
    const cancel = h('button', { type: 'button', class: 'secondary', onclick: () => close() }, 'Cancel');
    const headId = 'adm-ag-editor-h';
    const form = h(
      'form',
      { class: 'card adm-form', 'aria-labelledby': headId },
      h('h2', { id: headId, tabindex: '-1' }, v ? `Edit ${v.name}` : 'New agent profile'),
      h(
        'fieldset',
        null,
        h('legend', null, 'Profile'),
        h('div', { class: 'adm-form-grid' }, field(id('name'), 'Name', name), field(id('start'), 'Start URL', startUrl, 'Opened when the agent first drives a session (optional).')),
        field(id('prompt'), 'System prompt', prompt),
      ),
      h(
        'fieldset',
        null,
        h('legend', null, 'Provider'),
        h(
          'div',
          { class: 'adm-form-grid' },
          field(id('gen'), 'Tool generation', gen, 'Fixes the provider and its wire format.'),
          field(id('model'), 'Model', model),
          field(id('base'), 'Base URL', baseUrl, 'Without /v1; empty = the provider’s public API.'),
          field(id('maxtok'), 'Most output tokens per reply', maxTokens, 'Default 4096.'),
          field(id('thinking'), 'Thinking', thinking, 'Anthropic: "adaptive" or a budget of at least 1024 tokens.'),
          field(id('retries'), 'Retries', retries, 'Default 2.'),
          field(id('timeout'), 'Request timeout (seconds)', timeout, 'Default 600.'),
          field(id('keyenv'), 'API key environment variable', keyEnv, 'Take the key from this variable of the control plane (optional).'),
          v ? null : field(id('key'), 'Provider API key', apiKey, 'Write-only: stored apart and never shown again. Optional.'),
        ),
      ),
      h(
        'fieldset',
        null,
        h('legend', null, 'Limits'),
        h(
          'div',
          { class: 'adm-form-grid' },
          field(id('domains'), 'Allowed domains', domains, 'One per line (subdomains included); empty = any http(s) site.'),
          field(id('steps'), 'Step limit per turn', maxSteps, 'Default 50.'),
          field(id('budget'), 'Context budget (tokens)', budget, 'Default 100000; older turns are summarized past it.'),
          field(id('images'), 'Screenshots kept', keepImages, '0 = all.'),
        ),
      ),
      h(
        'fieldset',
        null,
        h('legend', null, 'Human in the loop'),
        feedback.el,
        waitFb.el,
        approveRisky.el,
        approveSafety.el,
        field(id('risky'), 'Risky patterns', risky, 'Regular expressions over an action’s description, one per line, e.g. (?i)\\b(send|submit|pay)\\b'),
        h(
          'div',
          { class: 'adm-form-grid' },
          field(id('apto'), 'Approval timeout (seconds)', approvalTimeout),
          field(id('into'), 'Human input timeout (seconds)', inputTimeout),
          field(id('ckevery'), 'Checkpoint every N steps', ckEvery),
          field(id('ckmax'), 'Checkpoints kept', ckMax),
          field(id('corr'), 'Corrections in context', corrections),
        ),
      ),
      err,
      h('div', { class: 'row' }, save, cancel),
    );

    function close(): void {
      editorBox.replaceChildren();
      delete editorBox.dataset.id;
      newBtn.focus();
    }

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      let body: Record<string, unknown>;
      try {
        const need = (n: number | null, what: string) => {
          if (n === null) throw new Error(`${what} is required.`);
          return n;
        };
        body = {
          name: name.value.trim(),
          system_prompt: prompt.value,
          provider: {
            generation: gen.value,
            model: model.value.trim(),
            base_url: optText(baseUrl.value),
            max_tokens: optNum(maxTokens.value),
            thinking: optText(thinking.value),
            max_retries: optNum(retries.value),
            timeout_secs: optNum(timeout.value),
            api_key_env: optText(keyEnv.value),
          },
          start_url: optText(startUrl.value),
          allowed_domains: lines(domains.value),
          max_steps: optNum(maxSteps.value),
          context_budget_tokens: optNum(budget.value),
          keep_images: optNum(keepImages.value),
          hitl: {
            feedback: feedback.input.checked,
            wait_for_feedback: waitFb.input.checked,
            approve_risky: approveRisky.input.checked,
            approve_safety_checks: approveSafety.input.checked,
            approval_timeout_secs: need(optNum(approvalTimeout.value), 'The approval timeout'),
            input_timeout_secs: need(optNum(inputTimeout.value), 'The human input timeout'),
            checkpoint_every: need(optNum(ckEvery.value), 'Checkpoint every N steps'),
            max_checkpoints: need(optNum(ckMax.value), 'Checkpoints kept'),
            corrections_in_context: need(optNum(corrections.value), 'Corrections in context'),
          },
          risky_patterns: lines(risky.value),
        };
        if (!v && apiKey.value) body.api_key = apiKey.value;
      } catch (e) {
        err.textContent = explain(e);
        return;
      }
      save.disabled = true;
      try {
        const saved = v ? await put<Profile>(`/agents/${encodeURIComponent(v.id)}`, body) : await post<Profile>('/agents', body);
        apiKey.value = '';
        msgs.info(v ? `The profile ${saved.name} is saved.` : `The profile ${saved.name} is created.`);
        close();
        await load();
      } catch (e) {
        err.textContent = `The profile could not be saved: ${explain(e)}`;
      } finally {
        save.disabled = false;
      }
    });

    editorBox.dataset.id = v?.id ?? '';
    editorBox.replaceChildren(form);
    form.scrollIntoView({ block: 'start' });
    (form.querySelector('h2') as HTMLElement).focus();
  }

  const newBtn = h('button', { type: 'button', onclick: () => edit(null) }, 'New agent profile');
  const listState = loading('agent profiles');
  root.replaceChildren(
    msgs.el,
    h(
      'section',
      { 'aria-labelledby': 'adm-agents-h' },
      h('div', { class: 'row adm-section-head' }, h('h2', { id: 'adm-agents-h' }, 'Agent profiles'), newBtn),
      listState,
      table.el,
    ),
    editorBox,
  );
  void load();
  return () => {
    gone = true;
    void gone;
  };
};
