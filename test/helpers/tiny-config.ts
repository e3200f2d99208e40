// Config sections the tests that train on writeRawHomelab's few days share: a model small enough
// to train in seconds, and a dataset of log_triage and trace_outcome only.

/** The demo preset at 16 wide, one H and one L cycle; `over` changes any field. */
export function tinyModel(over: Record<string, unknown> = {}) {
  return {
    preset: "demo" as const,
    hidden_size: 16,
    num_heads: 2,
    H_cycles: 1,
    L_cycles: 1,
    halt_max_steps: 2,
    puzzle_emb_len: 2,
    ...over,
  };
}

/** Four days of 64-token examples, at most `max` of log_triage and of trace_outcome. */
export function logTraceDataset(max: number) {
  const few = { max_examples: max, min_examples: 1 };
  return {
    window: "4d",
    seq_len: 64,
    tasks: {
      code_infill: { enabled: false },
      metric_forecast: { enabled: false },
      log_triage: few,
      trace_outcome: few,
    },
  };
}
