import { Adapters } from "../components/training/Adapters";
import { TrainForm } from "../components/training/TrainForm";
import { TrainingRuns } from "../components/training/TrainingRuns";
import { PageHeader } from "../components/ui";

export function TrainingPage() {
  return (
    <>
      <PageHeader
        title="Training"
        description="Fine-tune a model on a dataset with LoRA, watch its loss fall, compare its answers, and use the adapter in chat."
      />
      <div className="space-y-6">
        <TrainForm />
        <TrainingRuns />
        <Adapters />
      </div>
    </>
  );
}
