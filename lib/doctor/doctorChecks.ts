import { buildkitCheck } from "./buildkitCheck.ts";
import type { Check } from "./Check.ts";
import { configFileCheck } from "./configFileCheck.ts";
import { controlPlaneChecks } from "./controlPlaneChecks.ts";
import { dataDirChecks } from "./dataDirChecks.ts";
import type { DoctorContext } from "./DoctorContext.ts";
import { driftCheck } from "./driftCheck.ts";
import { hostChecks } from "./hostChecks.ts";
import { leftoverChecks } from "./leftoverChecks.ts";
import { logDropsCheck } from "./logDropsCheck.ts";
import { networkChecks } from "./networkChecks.ts";
import { serviceChecks } from "./serviceChecks.ts";
import { workloadChecks } from "./workloadChecks.ts";

/** Every check of `agent doctor`, in the order they run and are shown: host, BuildKit, config file, data dir, log drops, control plane, leftovers, network, workload, drift, service. */
export const doctorChecks: readonly Check<DoctorContext>[] = [...hostChecks, buildkitCheck, configFileCheck, ...dataDirChecks, logDropsCheck, ...controlPlaneChecks, ...leftoverChecks, ...networkChecks, ...workloadChecks, driftCheck, ...serviceChecks];
