export { buildTrainJob, inheritFromPod, jobName, runKey, trainJobSelector } from "./job-spec.js";
export { type Kube, loadKube } from "./kube.js";
export {
  cancelTrainJobs,
  type LogMeta,
  listTrainJobs,
  reattachTrainJob,
  runTrainStageInKubernetes,
  type TrainJobInfo,
  type TrainJobOptions,
  type TrainJobResult,
  type TrainJobStatus,
} from "./kubernetes.js";
export { parsePodLine, type TrainProgress } from "./progress-line.js";
