// What the orchestrator (../run.ts) takes and gives: its options, a run's events, a started run.
import type { Config } from "../../config/index.js";
import type { ObjectStore } from "../../store/index.js";
import type {
  LogLine,
  Progress,
  RunRecord,
  RunStatus,
  StageFns,
  StageName,
  StageStatus,
  Trigger,
} from "../contract.js";
import type { ModelRegistry } from "../deploy/registry.js";

/** Events a run emits while it works; the CLI draws them, the MCP server forwards them. */
export type RunEvent =
  | { type: "run"; runId: string; agent: string; status: RunStatus; error: string | null; at: string }
  | {
      type: "stage";
      runId: string;
      agent: string;
      stage: StageName;
      status: StageStatus;
      attempt: number;
      error: string | null;
      at: string;
    }
  | {
      type: "retry";
      runId: string;
      agent: string;
      stage: StageName;
      attempt: number;
      delay_ms: number;
      error: string;
      at: string;
    }
  | { type: "progress"; runId: string; agent: string; progress: Progress; detail?: unknown }
  | { type: "log"; runId: string; agent: string; line: LogLine };

export interface PipelineOptions {
  config: Config;
  store: ObjectStore;
  /** The stage implementations; tests and other runners (e.g. a Kubernetes Job) inject their own. */
  stages: StageFns;
  now?: () => Date;
  /** Waiting between retries; tests inject one that does not wait. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Writes report.html when a run ends; failures are logged, never fail the run. */
  onRunEnd?: (record: RunRecord, pipeline: { store: ObjectStore; registry: ModelRegistry }) => Promise<void>;
  /** How often a running process looks for a cancel request from another process. */
  cancelPollMs?: number;
  /**
   * Stops every run of this pipeline at its next step boundary (a server shutdown): the reason
   * is the abort reason, and no new run starts once it has fired.
   */
  signal?: AbortSignal;
  /** Called for every run this pipeline starts or resumes (the server's jobs follow them). */
  onRunStarted?: (started: StartedRun, opts: StartRunOptions) => void;
}

export interface StartRunOptions {
  agent: string;
  /** Stages to run, in pipeline order; default all five. */
  stages?: StageName[];
  /** Continue this run from its first unfinished stage. */
  resume?: string;
  /** Train from fresh weights instead of fine-tuning the champion. */
  fromScratch?: boolean;
  /** Train/evaluate on this dataset instead of the newest (when build is not run). */
  datasetId?: string;
  /** An evaluation run: the evaluate stage scores this registered version (stages: ["evaluate"]). */
  evaluate?: { version: string; against: string | null };
  signal?: AbortSignal;
  onEvent?: (e: RunEvent) => void;
  trigger?: Partial<Trigger>;
}

export interface StartedRun {
  runId: string;
  agent: string;
  /** False when another run of the agent was already running: runId is that run's. */
  started: boolean;
  /** Settles with the final record (also for a run started elsewhere: it is polled). */
  done: Promise<RunRecord>;
}
