import { JobList } from "../components/models/Jobs";
import { LocalModels } from "../components/models/LocalModels";
import { ModelLookup } from "../components/models/ModelLookup";
import { UploadModel } from "../components/models/UploadModel";
import { PageHeader } from "../components/ui";

export function ModelsPage() {
  return (
    <>
      <PageHeader title="Models" description="Find a model on the Hub, download it, and manage the models on this machine." />
      <div className="space-y-6">
        <ModelLookup />
        <JobList />
        <LocalModels />
        <UploadModel />
      </div>
    </>
  );
}
