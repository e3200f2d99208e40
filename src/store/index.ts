export { FsStore } from "./fs-store.js";
export {
  checkKey,
  checkPrefix,
  NotFoundError,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from "./types.js";
