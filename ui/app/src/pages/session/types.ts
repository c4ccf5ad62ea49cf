// The REST shapes the session pages read (from appliance/crates/control/src/api/*.rs).

export interface SessionRecord {
  id: string;
  owner: string;
  title: string;
  desktop: number;
  state: string;
  created_at: number;
  updated_at: number;
  message_count: number;
  agent?: string | null;
  /** The appliance the session is on (its name; in a fleet its page is `/a/<appliance>/`). */
  appliance?: string;
}

export interface LeaseHolder {
  session_id: string;
  desktop: number;
  user_id: string;
  user_name: string;
  login_id: string;
  since_ms: number;
  expires_ms: number;
}

export interface ControlStatus {
  held: boolean;
  holder?: LeaseHolder | null;
  yours: boolean;
}

export interface TokenUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens?: number;
  cache_read_input_tokens?: number;
}

export interface PendingApproval {
  id: number;
  kind: string;
  call: string;
  details: string[];
  expires_at: number;
}

export type AgentState = 'idle' | 'running' | 'paused' | 'waiting';

export interface AgentStatus {
  state: AgentState;
  steps: number;
  requests: number;
  usage: TokenUsage;
  turns_finished: number;
  profile?: string | null;
  approval?: PendingApproval | null;
  waiting_for?: string | null;
  last_outcome?: string | null;
  last_error?: string | null;
}

export interface AgentView {
  profile?: string | null;
  status?: AgentStatus | null;
}

export interface AgentTurnRecord {
  turn: number;
  steps: number;
  outcome: string;
  started_at: number;
  ended_at: number;
  usage: TokenUsage;
  error?: string | null;
}

export interface MessageRecord {
  seq: number;
  role: string;
  content: Array<Record<string, unknown>>;
  author: string;
  created_at: number;
}

export interface AgentProfile {
  id: string;
  name: string;
}

export interface PendingInput {
  id: number;
  kind: '2fa' | 'captcha' | 'confirm' | 'takeover';
  prompt: string;
  asked_by: string;
  asked_at: number;
  expires_at: number;
  host?: string | null;
}

export interface FeedbackView {
  seq: number;
  by: string;
  created_at: number;
  before_url?: string | null;
  after_url?: string | null;
  feedback: {
    kind: string;
    status: string;
    step: number;
    call?: string;
    instruction?: string | null;
    url?: string | null;
  };
}

export interface Chapter {
  start_ms: number;
  end_ms: number;
  unix_ms: number;
  kind: string;
  title: string;
}

export interface RecordingRecord {
  id: string;
  desktop: number;
  owner: string;
  state: 'recording' | 'finalizing' | 'ready' | 'failed';
  started_at: number;
  finished_at?: number | null;
  duration_ms?: number | null;
  size_bytes?: number | null;
  error?: string | null;
  stop_reason?: string | null;
}

export interface CredentialInfo {
  name: string;
  domains: string[];
  has_username: boolean;
  expires_at: number;
}

/** Milliseconds from a timestamp the API gives in seconds or milliseconds. */
export function ms(t: number): number {
  return t < 1e12 ? t * 1000 : t;
}
