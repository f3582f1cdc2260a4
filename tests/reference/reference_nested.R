# Reference numbers for the mixed model with lines nested in patients (tests/test_reference.py),
# from lme4 and lmerTest (Satterthwaite degrees of freedom).
# Re-run from the repository root:  Rscript tests/reference/reference_nested.R
# (Debian: apt-get install r-base-core r-cran-lme4 r-cran-lmertest). CI does not need R: the
# outputs (expected_nested_*.csv) are committed beside this script.
#
# Inputs:
#   nested_input.csv      simulated (tests/nested_sim.py, 150 patients, seed 2016): a non-singular
#                         fit of the full model, random intercepts and slopes at both levels;
#   trajectories_input.csv  the sample cohort (make_inputs.py): the full model is singular there
#                         (patient-level correlation at -1), so the reference is the model the tool
#                         falls back to, a random intercept by patient and an intercept and slope by line.
suppressMessages({library(lme4); library(lmerTest)})
here <- "tests/reference"
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
arms <- c("MMF", "IVIG", "JAKi")

fit_one <- function(data, formula, name) {
  m <- lmer(formula, data = data, REML = TRUE, control = ctrl)
  cf <- summary(m)$coefficients
  fe <- data.frame(model = name, term = rownames(cf), estimate = cf[, "Estimate"], se = cf[, "Std. Error"],
                   df = cf[, "df"])
  # Per-arm slopes (weeks + weeks:armX) as contrasts, with their Satterthwaite df (contest1D).
  beta <- names(fixef(m))
  sl <- do.call(rbind, lapply(arms, function(a) {
    L <- as.numeric(beta == "weeks" | beta == paste0("weeks:arm", a))
    ct <- contest1D(m, L)
    data.frame(model = name, arm = a, estimate = ct$Estimate, se = ct$`Std. Error`, df = ct$df)
  }))
  vc <- as.data.frame(VarCorr(m))
  vc <- data.frame(model = name, grp = vc$grp, var1 = ifelse(is.na(vc$var1), "", vc$var1),
                   var2 = ifelse(is.na(vc$var2), "", vc$var2), vcov = vc$vcov)
  list(fe = fe, sl = sl, vc = vc, info = data.frame(model = name, reml = REMLcrit(m), singular = isSingular(m)))
}

nested <- read.csv(file.path(here, "nested_input.csv"), stringsAsFactors = FALSE)
sample <- read.csv(file.path(here, "trajectories_input.csv"), stringsAsFactors = FALSE)
sample$patient_id <- sub(":.*", "", sample$line_id)
for (nm in c("nested", "sample")) { x <- get(nm); x$arm <- factor(x$arm, levels = arms); assign(nm, x) }

fits <- list(
  fit_one(nested, cdasi_activity ~ weeks * arm + (1 + weeks | patient_id) + (1 + weeks | patient_id:line_id),
          "nested_slopes"),
  fit_one(nested, cdasi_activity ~ weeks * arm + (1 | patient_id) + (1 | patient_id:line_id), "nested_intercepts"),
  fit_one(nested, cdasi_activity ~ weeks * arm + (1 + weeks | line_id), "nested_line_only"),
  fit_one(sample, cdasi_activity ~ weeks * arm + (1 + weeks | patient_id) + (1 + weeks | patient_id:line_id),
          "sample_slopes"),
  fit_one(sample, cdasi_activity ~ weeks * arm + (1 | patient_id) + (1 + weeks | patient_id:line_id),
          "sample_patient_intercept"))
out <- function(part, file) write.csv(do.call(rbind, lapply(fits, `[[`, part)), file.path(here, file), row.names = FALSE)
out("fe", "expected_nested_fixed.csv")
out("sl", "expected_nested_slopes.csv")
out("vc", "expected_nested_vc.csv")
out("info", "expected_nested_info.csv")
cat(R.version.string, "lme4", as.character(packageVersion("lme4")), "lmerTest",
    as.character(packageVersion("lmerTest")), "\n", file = file.path(here, "expected_nested_versions.txt"))
