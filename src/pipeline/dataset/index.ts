// The dataset stage: build from the raw store, read back, export to the reference format.
export {
  type BuildOptions,
  type BuildResult,
  buildAgentDataset,
  buildDataset,
  DatasetQualityError,
  datasetPrefix,
  encodingSpecOf,
  splitCaps,
} from "./build.js";
export { exportTrmNpy, npyBytes, type TrmNpyMetadata } from "./export-npy.js";
export { DatasetFormatError, decodeSplit, encodeSplit } from "./format.js";
export { DATASET_FORMAT, DATASET_VERSION, Manifest, QualityReport, TaskQuality } from "./manifest.js";
export {
  type Batch,
  candidateMemory,
  type Dataset,
  DatasetSplit,
  datasetMemory,
  latestDatasetId,
  listDatasets,
  openDataset,
  readDatasetManifest,
  type SplitName,
} from "./reader.js";
